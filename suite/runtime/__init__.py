"""What every command stands on: the backend registry, the one worker runtime, environments, machine id, JSON I/O."""
