"""Stand-in for the GPU machine's Python, to check that .whl/ holds everything gpu_check needs.

Makes /tmp/gpusim: links to this venv's files of only the packages the GPU machine has (torch,
torchvision, numpy, aiohttp, opencv-python-headless, onnxruntime, pillow, scikit-image, timm, scipy,
pip) and their dependencies. Then, with cp312-only wheels set aside (this venv is 3.11):
    PYTHON=".venv/bin/python -S" PYTHONPATH=/tmp/gpusim bash bench/gpu_check.sh --device cpu --repeats 1
"""
import importlib.metadata as m, re, os, shutil
from pathlib import Path
ROOTS = ["torch", "torchvision", "numpy", "aiohttp", "opencv-python-headless", "onnxruntime", "pillow",
         "scikit-image", "timm", "scipy", "pip"]
seen, todo = set(), list(ROOTS)
while todo:
    name = todo.pop().lower().replace("_", "-")
    if name in seen: continue
    try: dist = m.distribution(name)
    except m.PackageNotFoundError: print("absent", name); continue
    seen.add(name)
    for req in dist.requires or []:
        if "extra ==" in req: continue
        if ";" in req and "python_version" not in req and "platform" not in req and "sys_platform" not in req: continue
        todo.append(re.split(r"[ <>=!~;\[(]", req.strip())[0])
out = Path("/tmp/gpusim"); shutil.rmtree(out, ignore_errors=True); out.mkdir()
for name in sorted(seen):
    dist = m.distribution(name)
    tops = {str(f).split("/")[0] for f in dist.files or []}
    for top in tops:
        src = Path(dist.locate_file(top))
        if top.endswith(".pth") or top == ".." or not src.exists() or top.startswith("__"): continue
        if not (out / top).exists(): os.symlink(src, out / top)
print(sorted(seen))
