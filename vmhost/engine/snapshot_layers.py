"""Where disk-only snapshot overlays live in a VM's directory, and the chain they make (read by resources.plan,
so every definition vmhost writes has each disk's top overlay as its source):
    <vm dir>/snapshots/<seq>-<snapshot>/<target>.qcow2
"""

from pathlib import Path

LAYER_DIR = "snapshots"


def layer_root(vm_dir: Path) -> Path:
    return vm_dir / LAYER_DIR


def layers(vm_dir: Path) -> dict[str, tuple[Path, ...]]:
    """target -> its overlays, oldest first, as the VM directory holds them."""
    root = layer_root(vm_dir)
    found: dict[str, list[Path]] = {}
    for directory in sorted(root.iterdir() if root.is_dir() else [], key=_seq):
        for overlay in sorted(directory.glob("*.qcow2")):
            found.setdefault(overlay.stem, []).append(overlay)
    return {target: tuple(paths) for target, paths in found.items()}


def _seq(directory: Path) -> int:
    number = directory.name.partition("-")[0]
    return int(number) if number.isdigit() else 0


def new_layer_dir(vm_dir: Path, snapshot: str) -> Path:
    root = layer_root(vm_dir)
    taken = [_seq(d) for d in root.iterdir()] if root.is_dir() else []
    return root / f"{max(taken, default=0) + 1:04d}-{snapshot}"
