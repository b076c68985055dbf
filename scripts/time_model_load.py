"""Time focalnet-large construction (random init) and load_model(folder), two source trees in turns.

    git archive <old-commit> focalnet_edge | tar -x -C /tmp/old
    python scripts/time_model_load.py /tmp/old $PWD /tmp/large-ckpt

FOLDER must hold a focalnet-large checkpoint (e.g. `FocalNetForImageClassification(config)
.save_pretrained(FOLDER)` with the config below). Each run is a fresh process, one thread,
timed in CPU seconds (process_time) so that other load on the machine counts less.
"""
import subprocess, sys
code = r'''
import sys, time, torch
torch.set_num_threads(1)
from focalnet_edge.model import FocalNetConfig, FocalNetForImageClassification, load_model
cfg = FocalNetConfig(embed_dim=192, depths=[2,2,18,2], focal_levels=[3]*4, use_conv_embed=True, use_layerscale=True, use_post_layernorm=True, num_labels=1000, image_size=384)
import safetensors.torch  # file cache warmed by the previous runs
t = time.process_time(); m = FocalNetForImageClassification(cfg); a = time.process_time() - t
t = time.process_time(); m = load_model(sys.argv[1]); b = time.process_time() - t
print(f"{a:.2f} {b:.2f}")
'''
res = {"before": [], "after": []}
for _ in range(4):
    for name, tree in (("before", sys.argv[1]), ("after", sys.argv[2])):
        out = subprocess.run([sys.executable, "-c", code, sys.argv[3]], env={"PYTHONPATH": tree, "PATH": "/usr/bin"}, capture_output=True, text=True)
        a, b = map(float, out.stdout.split()) if out.returncode == 0 else (float("nan"),) * 2
        if out.returncode: print(out.stderr[-800:])
        res[name].append((a, b)); print(name, a, b, flush=True)
for name, v in res.items():
    print(f"{name}: construct (random init) min {min(x[0] for x in v):.2f} s median {sorted(x[0] for x in v)[len(v)//2]:.2f} s; load_model(folder) min {min(x[1] for x in v):.2f} s median {sorted(x[1] for x in v)[len(v)//2]:.2f} s")
