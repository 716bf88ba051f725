"""Read a TensorBoard run folder with TensorBoard's own EventAccumulator and
print what it holds as one JSON line: every scalar tag's (step, value)
pairs and every image tag's (step, width, height). The test compares them
with ddpm-lab's own tables; an event file TensorBoard cannot parse, or a
record whose CRC fails, shows up here as missing data."""

import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0})
acc.Reload()
tags = acc.Tags()
out = {
    "scalars": {
        t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags.get("scalars", [])
    },
    "images": {
        t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags.get("images", [])
    },
}
print(json.dumps(out))
