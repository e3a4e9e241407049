"""Checks on an exported bundle run where only torch, numpy and safetensors are importable, as a user's would."""

import json
import subprocess
import sys

import numpy as np

from core.zoo.data import load_dataset

CHECK = """
import json, sys
import numpy as np, torch
import model
card = json.load(open("card.json"))
images = torch.from_numpy(np.load(sys.argv[1]))
labels = torch.from_numpy(np.load(sys.argv[2]))
out = []
for entry in card["models"]:
    net = model.load(entry["generated_file"])
    with torch.no_grad():
        out.append((net(model.preprocess(images)).argmax(1) == labels).float().mean().item())
print(json.dumps(out))
"""


def run_in_bundle(unpacked, dataset: str, script: str = CHECK) -> list[float]:
    """Run `script` in a fresh interpreter in the bundle's folder, on the dataset's raw [0, 1] test images;
    only torch, numpy and (for .safetensors) safetensors are importable there, not this project."""
    data = load_dataset(dataset)
    mean, std = np.array(data.channel_mean).reshape(1, -1, 1, 1), np.array(data.channel_std).reshape(1, -1, 1, 1)
    np.save(unpacked / "images.npy", (data.x_test.numpy() * std + mean).astype(np.float32))
    np.save(unpacked / "labels.npy", data.y_test.numpy())
    (unpacked / "check.py").write_text(script)
    env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [sys.executable, "check.py", "images.npy", "labels.npy"],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
