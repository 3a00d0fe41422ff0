"""Parse a spec from a document (JSON or YAML) into a validated, normalised VMSpec."""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vmhost.spec.checks import cross_check
from vmhost.spec.errors import Problem, SpecError, problems_from_validation_error
from vmhost.spec.targets import assign_targets
from vmhost.spec.vm import VMSpec


@dataclass(frozen=True)
class SpecCheck:
    """Every problem of a document, and the spec to run host checks on: the whole spec when only cross-field
    or host problems remain, else the spec without its invalid top-level blocks (None when a required one is)."""

    spec: VMSpec | None
    problems: list[Problem]
    invalid: frozenset[str] = frozenset()
    """Top-level fields the schema refused: checks of anything under them are skipped, not guessed."""

    def without_invalid(self, problems: list[Problem]) -> list[Problem]:
        return [p for p in problems if _root(p.path) not in self.invalid]


def check_spec(data: Any) -> SpecCheck:
    """Schema, then cross-field rules on whatever parsed: one answer with every problem."""
    if not isinstance(data, dict):
        return SpecCheck(None, [Problem("", f"a spec must be a JSON object, got {type(data).__name__}")])
    try:
        spec = VMSpec.model_validate(data)
    except ValidationError as exc:
        schema = problems_from_validation_error(exc, data)
        invalid = frozenset(_root(p.path) for p in schema)
        partial = _without(data, invalid)
        if partial is None:
            return SpecCheck(None, schema, invalid)
        check = SpecCheck(partial, [], invalid)
        return _targeted(partial, sorted(schema + check.without_invalid(cross_check(partial))), invalid)
    return _targeted(spec, cross_check(spec), frozenset())


def _targeted(spec: VMSpec, problems: list[Problem], invalid: frozenset[str]) -> SpecCheck:
    """Host checks need every device named; a spec whose devices cannot all be named gets none."""
    try:
        return SpecCheck(assign_targets(spec), problems, invalid)
    except SpecError as exc:
        return SpecCheck(None, sorted(problems + exc.problems), invalid)


def _root(path: str) -> str:
    return path.split(".", 1)[0]


def _without(data: dict[str, Any], invalid: frozenset[str]) -> VMSpec | None:
    """The spec with its invalid optional blocks left at their defaults; None when that is not a valid spec."""
    try:
        return VMSpec.model_validate({key: value for key, value in data.items() if key not in invalid})
    except ValidationError:
        return None


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
