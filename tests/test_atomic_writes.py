"""Result files survive SIGKILL mid-write: the target is always one complete payload, never a half file.

A child process rewrites one path in a loop with suite.runtime.jsonio.atomic_write_json, alternating two
large, distinguishable payloads; the test kills it at seeded random moments and reads the file
back each time. A kill inside a write can leave the writer's ``.<name>.*.tmp`` file behind (no
cleanup runs on SIGKILL); those are listed, never mistaken for the result, and removed here.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

from suite.runtime.jsonio import atomic_write_json, read_result

MIB = 2**20
KILLS = 12
SEED = 20240607

# One big string each: cheap to serialise, slow enough to write that kills land inside writes.
CHILD = """
import sys
from suite.runtime.jsonio import atomic_write_json
path, size = sys.argv[1], int(sys.argv[2])
payloads = [{"schema": 1, "kind": "killtest", "which": w, "data": w * size} for w in ("a", "b")]
i = 0
while True:
    atomic_write_json(path, payloads[i % 2])
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def payload(which: str, size: int) -> dict:
    return {"schema": 1, "kind": "killtest", "which": which, "data": which * size}


def temp_files(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def test_sigkill_never_leaves_a_partial_result(tmp_path) -> None:
    size = 4 * MIB
    target = tmp_path / "result.json"
    expected = {w: payload(w, size) for w in ("a", "b")}
    rng = random.Random(SEED)
    seen, leftovers = set(), 0
    for _ in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(size)], stdout=subprocess.PIPE,
                                 text=True, cwd=Path(__file__).resolve().parents[1])
        try:
            assert child.stdout.readline().strip() == "ready"  # one complete write done
            try:
                child.wait(timeout=rng.uniform(0.0, 0.25))  # the kill moment; the child never exits by itself
            except subprocess.TimeoutExpired:
                pass
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        result = read_result(target, kind="killtest")  # ResultFileError on a truncated file
        assert result in expected.values(), f"{target} holds neither complete payload ({result.get('which')!r})"
        seen.add(result["which"])
        left = temp_files(target)
        leftovers += len(left)
        for path in left:  # a write the kill interrupted: never the result, safe to remove
            path.unlink()
    before = set(tmp_path.iterdir())
    atomic_write_json(target, expected["a"])
    assert set(tmp_path.iterdir()) == before == {target}  # a clean write leaves no temp file
    assert read_result(target, kind="killtest") == expected["a"]
    print(f"{KILLS} kills: final contents seen {sorted(seen)}, {leftovers} temp file(s) left by kills")
