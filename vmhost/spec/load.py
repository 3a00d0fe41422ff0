"""Parse a spec from a document (JSON or YAML) into a validated, normalised VMSpec."""

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vmhost.spec.checks import cross_check
from vmhost.spec.errors import Problem, SpecError, problems_from_validation_error
from vmhost.spec.targets import assign_targets
from vmhost.spec.vm import VMSpec


def parse_spec(data: Any) -> VMSpec:
    """Validate everything at once; raise SpecError listing every problem with its path."""
    if not isinstance(data, dict):
        raise SpecError([Problem("", f"a spec must be a JSON object, got {type(data).__name__}")])
    try:
        spec = VMSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from_validation_error(exc, data)) from None
    problems = cross_check(spec)
    if problems:
        raise SpecError(problems)
    return assign_targets(spec)


def read_document(path: Path) -> Any:
    """JSON or YAML, chosen by extension (YAML is a superset, so anything else is read as YAML)."""
    try:
        text = path.read_text()
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
