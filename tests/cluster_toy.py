"""A backend for the cluster tests: the first worker that loads it stalls until its node is killed.

Whichever node loads it first writes ``$DROPBENCH_TOY_DIR/first`` (naming its node) and sleeps;
every later load returns at once. It has no APIs, so verify reports it ``ok`` with no records.
"""
import os
import time
from pathlib import Path


class StallsOnFirstNode:
    name = "stalls"
    apis = ()

    def available(self):
        marker = Path(os.environ["DROPBENCH_TOY_DIR"]) / "first"
        try:
            with open(marker, "x", encoding="utf-8") as handle:
                handle.write(os.environ.get("DROPBENCH_TEST_NODE", "?"))
        except FileExistsError:
            return True
        time.sleep(120)  # the test kills this node's raylet meanwhile
        return True

    def versions(self):
        return {}

    def devices(self):
        return ["cpu"]
