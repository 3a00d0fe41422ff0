"""The declarative VM spec: pure data and validation, no host access."""

from vmhost.spec.errors import Problem, SpecError
from vmhost.spec.load import load_spec_file, parse_spec
from vmhost.spec.vm import VMSpec

__all__ = ["Problem", "SpecError", "VMSpec", "load_spec_file", "parse_spec"]
