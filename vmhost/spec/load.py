"""Parse a spec from a document (JSON or YAML) into a validated, normalised VMSpec."""

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vmhost.spec.checks import cross_check
from vmhost.spec.errors import Problem, SpecError, join_path, path_parts, problems_from_validation_error
from vmhost.spec.targets import assign_targets
from vmhost.spec.vm import VMSpec

Parts = tuple[str | int, ...]

PLACEHOLDERS: dict[Parts, Any] = {("name",): "unnamed", ("memory",): "16MiB", ("memory", "size"): "16MiB"}
"""Neutral stand-ins for required fields that failed, so the rest of the spec can still be checked: the smallest
valid values (memory.max_size, when valid, is never below 16MiB). The checks of their own block are dropped."""
DEPENDENTS: dict[str, tuple[str, ...]] = {
    "cpu": ("numa",),  # the cells cover vCPUs 0..max_vcpus-1
    "memory": ("numa",),  # the cells add up to memory.size
    "iothreads": ("disks",),  # a disk's iothread is one of them
    "boot": ("disks", "cdroms", "features"),  # ide is not on q35; UEFI needs ACPI
    "clock": ("features",),  # hyperv_synic needs the hypervclock timer
    "graphics": ("usb",),  # redirection needs SPICE
    "usb": ("graphics",),  # a tablet needs a USB controller
    "passthrough": ("usb",),  # passthrough needs a USB controller
    "nics": ("cloud_init",),  # raw network_config excludes NIC guest settings
    "kind": ("container",),  # a container block is for kind container only
}
"""Cross-field checks that read another top-level block: dropped when that block had a schema problem."""
ROUNDS = 32
"""Each pruning round removes at least one element; a document needing more is given up on (no partial spec)."""


@dataclass(frozen=True)
class Pruning:
    """What was taken out of a document so that the rest parses: failed fields (an optional one then has its
    default), elements left without a required field (a list item goes; the indexes of the others stay as the
    document has them), and required top-level fields given a placeholder."""

    data: dict[str, Any]
    removed: frozenset[Parts] = frozenset()
    placed: frozenset[Parts] = frozenset()

    def document(self) -> dict[str, Any]:
        built: dict[str, Any] = self._build(self.data, ())
        return built

    def _build(self, node: Any, at: Parts) -> Any:
        if isinstance(node, dict):
            kept = {
                key: self._build(value, (*at, key)) for key, value in node.items() if (*at, key) not in self.removed
            }
            kept.update({path[-1]: PLACEHOLDERS[path] for path in self.placed if path[:-1] == at})
            return kept
        if isinstance(node, list):
            return [
                self._build(value, (*at, index)) for index, value in enumerate(node) if (*at, index) not in self.removed
            ]
        return node

    def original(self, parts: Sequence[str | int]) -> Parts:
        """A path in the pruned document as a path in the original one (list indexes skip removed items)."""
        node: Any = self.data
        at: Parts = ()
        for given in parts:
            part: str | int = given
            if isinstance(node, list) and (isinstance(given, int) or given.isdigit()):
                surviving = [i for i in range(len(node)) if (*at, i) not in self.removed]
                index = int(given)
                part = surviving[index] if index < len(surviving) else index
                node = node[part] if part < len(node) else None
            elif isinstance(node, dict) and given in node:
                node = node[given]
            else:
                node = None
            at = (*at, part)
        return at

    def existing(self, parts: Parts) -> Parts:
        """The longest start of `parts` that is in the original document: where a failed value sits."""
        node: Any = self.data
        for length, part in enumerate(parts):
            if isinstance(node, dict) and part in node:  # noqa: SIM114 (one branch each, for mypy)
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return parts[:length]
        return parts

    def element(self, parts: Parts) -> Parts:
        """The block or list item a failed field belongs to (whose own cross-field checks are dropped); a
        top-level field is its own."""
        for length in range(len(parts) - 1, 0, -1):
            if self.existing(parts[:length]) == parts[:length] and isinstance(self._node(parts[:length]), dict):
                return parts[:length]
        return parts

    def _node(self, parts: Parts) -> Any:
        """The value at a path existing() found."""
        node: Any = self.data
        for part in parts:
            node = node[part]
        return node

    def failed(self) -> list[Parts]:
        return [*self.removed, *self.placed]

    def cross(self, problems: list[Problem]) -> list[Problem]:
        """Cross-field problems of the pruned spec that do not rest on a failed field or a placeholder."""
        elements = [self.element(parts) for parts in self.failed()]
        dependents = {root for parts in elements for root in DEPENDENTS.get(str(parts[0]), ())}
        return [
            problem
            for problem in self._remapped(problems)
            if not any(_under(problem.path, parts) for parts in elements) and _root(problem.path) not in dependents
        ]

    def host(self, problems: list[Problem]) -> list[Problem]:
        """Host problems of the pruned spec, except those of the failed fields themselves."""
        failed = self.failed()
        return [problem for problem in self._remapped(problems) if not any(_under(problem.path, p) for p in failed)]

    def _remapped(self, problems: list[Problem]) -> list[Problem]:
        return [Problem(join_path(self.original(_split(p.path))), p.message) for p in problems]


@dataclass(frozen=True)
class SpecCheck:
    """Every problem of a document, and the spec to run host checks on: the whole spec when only cross-field
    or host problems remain, else the pruned one (None when even pruning leaves no spec)."""

    spec: VMSpec | None
    problems: list[Problem]
    pruning: Pruning | None = None
    """What the schema refused; host checks of those fields are skipped, not guessed."""

    def without_invalid(self, problems: list[Problem]) -> list[Problem]:
        """Host problems of `spec`, named by their paths in the document."""
        return problems if self.pruning is None else self.pruning.host(problems)


def check_spec(data: Any) -> SpecCheck:
    """Schema, then cross-field rules on whatever parsed: one answer with every problem."""
    if not isinstance(data, dict):
        return SpecCheck(None, [Problem("", f"a spec must be a JSON object, got {type(data).__name__}")])
    try:
        spec = VMSpec.model_validate(data)
    except ValidationError as exc:
        schema = problems_from_validation_error(exc, data)
        partial, pruning = _pruned(data, exc)
        if partial is None:
            return SpecCheck(None, schema, pruning)
        return _targeted(partial, sorted(set(schema + pruning.cross(cross_check(partial)))), pruning)
    return _targeted(spec, cross_check(spec), None)


def _pruned(data: dict[str, Any], exc: ValidationError) -> tuple[VMSpec | None, Pruning]:
    """Take out what failed, round by round (a failed required field leaves its element incomplete in the next
    round), until the rest is a spec; None when only the whole document could go."""
    pruning = Pruning(data)
    for _ in range(ROUNDS):
        document = pruning.document()
        removed, placed = set(pruning.removed), set(pruning.placed)
        for error in exc.errors():
            parts = pruning.original(path_parts(tuple(error["loc"]), document))
            if error["type"] == "missing" and parts in PLACEHOLDERS and parts not in placed:
                placed.add(parts)
                continue
            target = parts[:-1] if error["type"] == "missing" else pruning.existing(parts)
            if not target:
                return None, pruning
            removed.add(target)
        if (removed, placed) == (set(pruning.removed), set(pruning.placed)):
            return None, pruning
        pruning = Pruning(data, frozenset(removed), frozenset(placed))
        try:
            return VMSpec.model_validate(pruning.document()), pruning
        except ValidationError as again:
            exc = again
    return None, pruning


def _targeted(spec: VMSpec, problems: list[Problem], pruning: Pruning | None) -> SpecCheck:
    """Host checks need every device named; a spec whose devices cannot all be named gets none."""
    try:
        return SpecCheck(assign_targets(spec), problems, pruning)
    except SpecError as exc:
        named = exc.problems if pruning is None else pruning.cross(exc.problems)
        return SpecCheck(None, sorted(set(problems + named)), pruning)


def _root(path: str) -> str:
    return path.split(".", 1)[0]


def _split(path: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in path.split(".")] if path else []


def _under(path: str, parts: Parts) -> bool:
    prefix = join_path(parts)
    return path == prefix or path.startswith(prefix + ".")


def parse_spec(data: Any) -> VMSpec:
    """Validate everything at once; raise SpecError listing every problem with its path."""
    check = check_spec(data)
    if check.problems or check.spec is None:
        raise SpecError(check.problems)
    return check.spec


STDIN = Path("-")


def read_document(path: Path) -> Any:
    """JSON or YAML, chosen by extension (YAML is a superset, so anything else is read as YAML); `-` is standard
    input (read as YAML, so JSON too), as `kubectl apply -f -` takes it."""
    try:
        text = sys.stdin.read() if path == STDIN else path.read_text()
    except OSError as exc:
        raise SpecError([Problem("", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            [Problem("", f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}")]
        ) from None


def load_spec_file(path: Path) -> VMSpec:
    return parse_spec(read_document(path))
