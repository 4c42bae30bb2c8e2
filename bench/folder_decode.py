"""Benchmark: memory to read one huge image of an image folder (``engine.data.folder._read``) against
the plain decode that loads it at full size, converts it to RGB, crops and resizes it.

Each decode runs in a fresh process; the figure is the growth of its peak resident memory (VmHWM,
Linux) over the decode. The images are generated: a 12000 x 12000 RGB gradient saved as JPEG and
as PNG, and a grey one as PNG.

    python bench/folder_decode.py [--side 12000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = r"""
import sys


def peak_kib():  # this process's peak resident memory; ru_maxrss would start from the parent's
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0])


from pathlib import Path
import numpy as np
from PIL import Image
from engine.data.folder import _read
Image.MAX_IMAGE_PIXELS = None  # the benchmark's images are large on purpose


def plain(path, size):
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


read = _read if sys.argv[1] == "engine" else plain
before = peak_kib()
image = read(Path(sys.argv[2]), 64)
assert image.shape == (3, 64, 64)
print((peak_kib() - before) / 1024)
"""


def peak_mib(how: str, path: Path) -> float:
    done = subprocess.run([sys.executable, "-c", MEASURE, how, str(path)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=12000)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    n = args.side
    ramp = np.linspace(0, 255, n, dtype=np.float32).astype(np.uint8)
    red, green = np.broadcast_to(ramp[None, :], (n, n)), np.broadcast_to(ramp[:, None], (n, n))
    with tempfile.TemporaryDirectory() as tmp:
        colour = Image.fromarray(np.stack([red, green, 255 - red], -1))
        files = {"RGB JPEG": Path(tmp) / "rgb.jpg", "RGB PNG": Path(tmp) / "rgb.png",
                 "grey PNG": Path(tmp) / "grey.png"}
        colour.save(files["RGB JPEG"], quality=80)
        colour.save(files["RGB PNG"], compress_level=1)
        Image.fromarray(np.ascontiguousarray(red)).save(files["grey PNG"], compress_level=1)
        del colour
        print(f"{n} x {n} image, peak memory growth of one decode to 64 x 64 (MiB)")
        for name, path in files.items():
            ours, plain = peak_mib("engine", path), peak_mib("plain", path)
            print(f"  {name:9} engine {ours:7.0f}   plain full-size decode {plain:7.0f}   "
                  f"ratio {plain / max(ours, 1):5.1f}x")


if __name__ == "__main__":
    main()
