"""``ferray doctor``: what this installation runs on, and whether ferray's Ray workarounds hold.

>>> from ferray.doctor import diagnose
>>> diagnose()["ray"]["version"]          # doctest: +SKIP
'2.60.0'
"""

from __future__ import annotations

import importlib.metadata
import os

__all__ = ["diagnose", "render"]

_PACKAGES = (
    "ferray",
    "ray",
    "torch",
    "torchvision",
    "timm",
    "albumentations",
    "optuna",
    "scikit-learn",
    "pyarrow",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "safetensors",
    "wandb",
    "grad-cam",
)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def diagnose(*, clean_ray_sessions: bool = False) -> dict:
    """Versions, Ray internals ferray relies on (available or fallen back), devices, Ray's temp usage."""
    from ferray.runtime import compat
    from ferray.runtime.logs import clean_ray_sessions as clean
    from ferray.runtime.logs import ray_session_usage

    checks = compat.check()
    missing_required = [w.name for w, ok, _ in checks if not ok and w.required]
    removed = freed = 0
    if clean_ray_sessions:
        removed, freed = clean()
    sessions, size = ray_session_usage()
    try:
        import torch

        cuda = torch.cuda.is_available()
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    except Exception:  # noqa: BLE001 - a broken torch is itself the finding
        cuda, gpus = False, []
    return {
        "ok": not missing_required,
        "packages": {p: _version(p) for p in _PACKAGES},
        "ray": {
            "version": _version("ray"),
            "tested": ",".join(compat.TESTED_RAY),
            "internals": [
                {
                    "name": w.name,
                    "what": w.what,
                    "available": ok,
                    "why": w.why,
                    "fallback": w.fallback or "none: ferray refuses to start",
                    "detail": d,
                }
                for w, ok, d in checks
            ],
            "missing_required": missing_required,
        },
        "devices": {"cpus": os.cpu_count(), "cuda": cuda, "gpus": gpus},
        "ray_sessions": {"folders": sessions, "bytes": size, "removed": removed, "freed_bytes": freed},
    }


def render(report: dict) -> str:
    """The report as text."""
    lines = ["packages: " + ", ".join(f"{k} {v or '-'}" for k, v in report["packages"].items())]
    ray = report["ray"]
    lines.append(f"ray {ray['version']} (ferray is tested with ray {ray['tested']}); Ray internals ferray uses:")
    for item in ray["internals"]:
        state = "ok" if item["available"] else ("MISSING" if item["fallback"].startswith("none") else "fallback")
        lines.append(f"  [{state:>8}] {item['name']}: {item['what']}")
        if not item["available"]:
            lines.append(f"             {item['detail']}; fallback: {item['fallback']}")
    dev = report["devices"]
    lines.append(f"devices: {dev['cpus']} CPUs" + (f", GPUs: {', '.join(dev['gpus'])}" if dev["gpus"] else ", no GPU"))
    rs = report["ray_sessions"]
    lines.append(
        f"Ray session folders: {rs['folders']} ({rs['bytes'] / 2**20:.0f} MiB)"
        + (
            f"; removed {rs['removed']} ({rs['freed_bytes'] / 2**20:.0f} MiB)"
            if rs["removed"]
            else "; `ferray doctor --clean-ray-sessions` deletes those older than a day"
        )
    )
    if ray["missing_required"]:
        lines.append(
            "NOT OK: this Ray lacks internals ferray needs: "
            + ", ".join(ray["missing_required"])
            + f"; install ray {ray['tested']}"
        )
    return "\n".join(lines)
