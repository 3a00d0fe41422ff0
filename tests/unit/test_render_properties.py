"""Property tests: every spec parse_spec() accepts renders to a document libvirt's schema accepts, stably."""

from typing import Any

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from tests.unit.strategies import context_for, spec_dicts
from vmhost.render.libvirt import domain_xml, render_domain, validate_domain_xml
from vmhost.spec import SpecError, VMSpec, parse_spec

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(data=spec_dicts(), accel=st.sampled_from(["kvm", "tcg"]))
def test_accepted_specs_render_schema_valid(data: dict[str, Any], accel: str) -> None:
    spec = _accepted(data)
    ctx = context_for(spec, accel)
    errors = validate_domain_xml(render_domain(spec, ctx))
    assert errors == [], "\n".join([*errors, domain_xml(spec, ctx)])


@PROPERTY_SETTINGS
@given(data=spec_dicts(), accel=st.sampled_from(["kvm", "tcg"]))
def test_rendering_is_deterministic(data: dict[str, Any], accel: str) -> None:
    """Same input, same bytes; and a re-parsed copy of the same dict renders the same too."""
    spec = _accepted(data)
    ctx = context_for(spec, accel)
    assert domain_xml(spec, ctx) == domain_xml(spec, ctx)
    assert domain_xml(parse_spec(data), ctx) == domain_xml(spec, ctx)


def _accepted(data: dict[str, Any]) -> VMSpec:
    """The strategies cover fields independently; cross-field combinations the spec refuses are skipped."""
    try:
        return parse_spec(data)
    except SpecError:
        reject()
