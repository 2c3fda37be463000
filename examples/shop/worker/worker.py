"""The example shop's worker: a long-running loop."""

import time

while True:
    print("working", flush=True)
    time.sleep(30)
