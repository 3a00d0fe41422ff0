"""`vmhost validate --dialect vmadm`: SmartOS payloads checked and reported the way `vmadm validate` does."""

import json
from pathlib import Path

from typer.testing import CliRunner

from vmhost.cli.main import app

PAYLOAD = {
    "brand": "bhyve",
    "alias": "web",
    "ram": 256,
    "vcpus": 1,
    "nics": [{"nic_tag": "admin", "model": "virtio", "primary": True}],
    "disks": [{"model": "virtio", "size": 1024, "boot": True}],
}


def run(tmp_path: Path, payload: dict, *args: str):
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    return CliRunner().invoke(app, ["validate", "--dialect", "vmadm", "-f", str(path), *args])


def test_valid_payload_prints_vmadms_valid_line(tmp_path):
    result = run(tmp_path, PAYLOAD)
    assert result.exit_code == 0
    assert result.stderr.strip() == "VALID 'create' payload for bhyve brand VMs."  # stderr, as vmadm prints it
    assert result.stdout == ""


def test_invalid_payload_prints_vmadms_json_and_exits_1(tmp_path):
    payload = {**PAYLOAD, "ram": "lots", "nics": [{**PAYLOAD["nics"][0], "vlan_id": 5000}], "dataset_name": "x"}
    result = run(tmp_path, payload)
    assert result.exit_code == 1
    assert json.loads(result.stderr) == {
        "bad_values": ["ram", "nics.*.vlan_id"],
        "bad_properties": ["dataset_name"],
        "missing_properties": [],
    }


def test_unknown_dialect_is_named(tmp_path):
    run(tmp_path, PAYLOAD)
    result = CliRunner().invoke(app, ["validate", "--dialect", "ovf", "-f", str(tmp_path / "payload.json")])
    assert result.exit_code == 1
    assert "unknown dialect 'ovf'" in result.stderr
