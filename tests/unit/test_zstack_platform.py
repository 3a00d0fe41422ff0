"""ZStack StartVmCmd platform fields → spec → libvirt XML, each rendered as ZStack's agent renders it.

Every domain here is checked against libvirt's RelaxNG schema; refusals name the ZStack field. Agent behaviour
is from zstack-utility @ f7b496e8, kvmagent/kvmagent/plugins/vm_plugin.py (Vm.from_StartVmCmd), and the values
the management node sends from zstack @ 5a29293b, KVMHost.startVm.
"""

from pathlib import Path
from typing import Any, Literal

import pytest
from lxml import etree

from tests.unit.test_zstack_convert import example, problems, variant
from vmhost.dialects.zstack import start_vm_spec
from vmhost.render.libvirt import RenderContext, render_domain, validate_domain_xml
from vmhost.spec import SpecError, parse_spec

GIB = 2**30


def domain(cmd: dict[str, Any], accel: Literal["kvm", "tcg"] = "kvm") -> etree._Element:
    """The rendered domain of a command, after checking that libvirt's schema accepts it."""
    spec = parse_spec(start_vm_spec(cmd))
    ctx = RenderContext(accel=accel, console_log=Path("/var/log/vmhost/console.log"), disk_formats={"vda": "qcow2"})
    root = render_domain(spec, ctx)
    assert validate_domain_xml(root) == []
    return root


def spice(**fields: Any) -> dict[str, Any]:
    return variant(consoleMode="spice", videoType="qxl", **fields)


def windows(**fields: Any) -> dict[str, Any]:
    """What the management node sends for a Windows guest: localtime clock and Hyper-V enlightenments."""
    return variant(clock="localtime", emulateHyperV=True, imagePlatform="Windows", **fields)


# ---- cpu model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_nested_virtualization_none_is_a_bare_cpu_without_host_flags(accel):
    cpu = domain(variant(useNuma=False), accel).find("cpu")
    assert cpu is None or (cpu.get("mode") is None and cpu.find("model") is None)


def test_nested_virtualization_none_keeps_the_default_model_with_hotplug_topology():
    cpu = domain(example()).find("cpu")
    assert cpu.get("mode") is None
    assert cpu.find("model") is None
    assert cpu.find("numa/cell").get("cpus") == "0-127"


@pytest.mark.parametrize("mode", ["host-model", "host-passthrough"])
def test_nested_virtualization_host_modes(mode):
    assert domain(variant(nestedVirtualization=mode)).find("cpu").get("mode") == mode


def test_nested_virtualization_custom_names_the_model():
    cpu = domain(variant(nestedVirtualization="custom", vmCpuModel="Skylake-Server")).find("cpu")
    assert (cpu.get("mode"), cpu.findtext("model")) == ("custom", "Skylake-Server")


def test_x2apic_and_hypervisor_flags_are_turned_off_on_a_named_model():
    cmd = variant(nestedVirtualization="host-model", x2apic=False, cpuHypervisorFeature=False)
    features = {f.get("name"): f.get("policy") for f in domain(cmd).iterfind("cpu/feature")}
    assert features == {"x2apic": "disable", "hypervisor": "disable"}


def test_x2apic_off_on_the_default_model_sets_no_flag_as_zstack_does():
    cmd = variant(x2apic=False, cpuHypervisorFeature=False)
    assert domain(cmd).findall("cpu/feature") == []


def test_x2apic_on_is_the_default_and_adds_nothing():
    assert domain(variant(nestedVirtualization="host-model", x2apic=True)).findall("cpu/feature") == []


def test_cpu_vendor_override_is_refused_by_name():
    assert "vmCpuVendorId" in problems(variant(nestedVirtualization="host-model", vmCpuVendorId="AuthenticAMD"))
    assert start_vm_spec(variant(vmCpuVendorId="None"))["cpu"]["mode"] == "default"


# ---- vCPU hotplug topology -----------------------------------------------------------------------


def test_topology_sized_for_max_vcpu_num_is_how_zstack_asks_for_hotplug():
    cmd = variant(cpuNum=2, maxVcpuNum=8, socketNum=2, cpuOnSocket=4, threadsPerCore=1)
    root = domain(cmd)
    vcpu = root.find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("8", "2")
    assert dict(root.find("cpu/topology").attrib) == {"sockets": "2", "cores": "4", "threads": "1"}


def test_topology_sized_for_cpu_num_grows_sockets_for_the_ceiling():
    cmd = variant(cpuNum=2, maxVcpuNum=8, socketNum=1, cpuOnSocket=2, threadsPerCore=1)
    assert domain(cmd).find("cpu/topology").get("sockets") == "4"


def test_topology_matching_neither_count_is_refused_naming_both():
    found = problems(variant(cpuNum=2, maxVcpuNum=8, socketNum=3, cpuOnSocket=1))
    assert "maxVcpuNum (8) or cpuNum (2)" in found["socketNum"]


# ---- memory --------------------------------------------------------------------------------------


def test_max_memory_is_the_hosts_total_and_need_not_be_whole_mebibytes():
    host_total = 16 * GIB - 123 * 1024  # MemTotal in KiB, as the management node reports it
    root = domain(variant(maxMemory=host_total))
    assert root.findtext("maxMemory") == str((16 * GIB - 2**20) // 1024)
    assert root.find("maxMemory").get("slots") == "16"


def test_max_memory_below_memory_means_no_memory_hotplug():
    assert domain(variant(maxMemory=GIB)).find("maxMemory") is None


def test_mem_access_shared_backs_memory_shareably():
    assert domain(variant(MemAccess="shared")).find("memoryBacking/access").get("mode") == "shared"


@pytest.mark.parametrize("access", ["private", None])
def test_mem_access_private_leaves_memory_as_it_is(access):
    assert domain(variant(MemAccess=access)).find("memoryBacking") is None


def test_mem_access_other_values_are_refused():
    assert "MemAccess" in problems(variant(MemAccess="public"))


def test_no_share_pages_keeps_ksm_away():
    assert domain(variant(noSharePages=True)).find("memoryBacking/nosharepages") is not None


# ---- firmware, SMBIOS, boot menu -----------------------------------------------------------------


def test_system_serial_and_chassis_asset_tag_go_into_smbios():
    root = domain(example())
    assert root.find("os/smbios").get("mode") == "sysinfo"
    assert root.findtext("sysinfo/system/entry[@name='serial']") == "4f3e9046-776d-4095-8edd-909523ede46d"
    assert root.findtext("sysinfo/chassis/entry[@name='asset']") == "www.zstack.io"


def test_oem_strings_go_into_smbios():
    root = domain(variant(oemStrings=["zstack:vm", "licence=42"]))
    assert [e.text for e in root.iterfind("sysinfo/oemStrings/entry")] == ["zstack:vm", "licence=42"]


def test_without_a_serial_there_is_no_sysinfo_as_in_zstack():
    root = domain(variant(systemSerialNumber=None))
    assert root.find("sysinfo") is None
    assert root.find("os/smbios") is None


def test_boot_menu_splash_timeout_in_milliseconds():
    assert domain(variant(bootMenuSplashTimeout=3000)).find("os/bootmenu").get("timeout") == "3000"


def test_boot_menu_splash_timeout_without_the_menu_is_ignored_as_zstack_does():
    assert domain(variant(useBootMenu=False, bootMenuSplashTimeout=3000)).find("os/bootmenu") is None


def test_boot_menu_splash_timeout_out_of_range_names_the_zstack_field():
    assert "bootMenuSplashTimeout" in problems(variant(bootMenuSplashTimeout=70000))


# ---- Hyper-V -------------------------------------------------------------------------------------


def test_hyperv_clock_turns_on_the_synthetic_timers_and_the_hypervclock():
    root = domain(windows(hypervClock=True))
    hyperv = root.find("features/hyperv")
    assert all(hyperv.find(name).get("state") == "on" for name in ("vpindex", "synic", "stimer"))
    assert root.find("clock/timer[@name='hypervclock']").get("present") == "yes"


def test_hyperv_timers_are_left_out_under_tcg():
    root = domain(windows(hypervClock=True), "tcg")
    assert root.find("features/hyperv/synic") is None


def test_hyperv_clock_off_adds_no_timers():
    root = domain(windows(hypervClock=False))
    assert root.find("features/hyperv/synic") is None
    assert root.find("clock/timer[@name='hypervclock']") is None


def test_hyperv_clock_on_a_linux_guest_is_only_the_timer_on_localtime():
    assert domain(variant(hypervClock=True)).find("clock/timer[@name='hypervclock']") is None
    root = domain(variant(hypervClock=True, clock="localtime"))
    assert root.find("clock/timer[@name='hypervclock']") is not None
    assert root.find("features/hyperv") is None


def test_vendor_id_is_the_hyperv_vendor_id():
    assert domain(windows()).find("features/hyperv/vendor_id").get("value") == "zstack.io"


def test_vendor_id_without_hyperv_is_ignored_as_zstack_does():
    assert domain(example()).find("features/hyperv") is None


def test_vendor_id_longer_than_hyperv_allows_names_the_zstack_field():
    found = problems(windows(vendorId="a-vendor-too-long"))
    assert "vmhost: features.hyperv_vendor_id" in found["vendorId"]


# ---- SPICE, video, sound, USB redirection --------------------------------------------------------


def test_spice_sound_card_is_zstacks_sound_type():
    assert domain(spice(soundType="ac97")).find("devices/sound").get("model") == "ac97"
    assert domain(spice(soundType=None)).find("devices/sound").get("model") == "ich6"


def test_sound_type_on_vnc_adds_no_card_as_in_zstack():
    assert domain(variant(soundType="ich9")).find("devices/sound") is None


def test_unknown_sound_type_is_refused():
    assert "soundType" in problems(spice(soundType="gus"))


def test_vdi_monitor_number_is_one_qxl_adapter_per_monitor_with_qxl_memory():
    qxl = {"ram": "65536", "vram": "65536", "vgamem": "16384"}
    models = domain(spice(VDIMonitorNumber=2, qxlMemory=qxl)).findall("devices/video/model")
    assert [dict(m.attrib) for m in models] == [{"type": "qxl", "ram": "65536", "vram": "65536", "vgamem": "16384"}] * 2


def test_vdi_monitor_number_without_qxl_is_one_adapter_as_in_zstack():
    assert len(domain(variant(videoType="vga", VDIMonitorNumber=3)).findall("devices/video")) == 1


def test_malformed_qxl_memory_names_the_zstack_field():
    assert "qxlMemory.vram" in problems(spice(qxlMemory={"ram": "65536", "vram": "lots", "vgamem": "16384"}))


@pytest.mark.parametrize("mode", ["off", "all", "filter"])
def test_spice_streaming_mode(mode):
    assert domain(spice(spiceStreamingMode=mode)).find("devices/graphics/streaming").get("mode") == mode


def test_spice_streaming_mode_is_checked():
    assert "spiceStreamingMode" in problems(spice(spiceStreamingMode="sometimes"))


def test_secure_spice_channels_are_refused_rather_than_served_in_the_clear():
    assert "TLS" in problems(spice(spiceChannels=["main", "inputs"]))["spiceChannels"]
    assert domain(spice(spiceChannels=[])).find("devices/graphics/channel") is None


def test_usb_redirect_is_four_spicevmc_redirection_devices():
    redirdevs = domain(spice(usbRedirect=True)).findall("devices/redirdev")
    assert [(r.get("type"), r.get("bus")) for r in redirdevs] == [("spicevmc", "usb")] * 4


def test_usb_redirect_as_the_text_older_management_nodes_send():
    assert len(domain(spice(usbRedirect="false")).findall("devices/redirdev")) == 0
    assert len(domain(spice(usbRedirect="true")).findall("devices/redirdev")) == 4


def test_usb_redirect_without_spice_is_refused():
    assert "SPICE" in problems(variant(usbRedirect=True))["usbRedirect"]


# ---- NICs that are not bridge ports --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vDPA", "dpdkvhostuserclient", "VF", "TFVNIC", "MACVLAN"])
def test_nics_other_than_bridge_ports_are_refused_naming_the_type(kind):
    nic = {**example()["nics"][0], "type": kind}
    assert kind in problems(variant(nics=[nic]))["nics.0.type"]


def test_vhost_user_socket_addon_is_refused_never_a_bridge():
    assert "vhost-user" in problems(variant(addons={"vhostSrcPath": "/var/run/vhost/sock"}))["addons.vhostSrcPath"]


@pytest.mark.parametrize("kind", ["VNIC", "VF", None])
def test_sriov_vf_nic_is_the_vf_itself_through_vfio_with_its_mac_and_vlan(kind):
    vf = {**example()["nics"][0], "type": kind, "pciDeviceAddress": "0000:3b:02.1", "vlanId": "200", "bootOrder": 2}
    root = {**example()["rootVolume"], "bootOrder": 1}
    interface = domain(variant(nics=[vf], rootVolume=root)).find("devices/interface")
    assert (interface.get("type"), interface.get("managed")) == ("hostdev", "yes")
    assert interface.find("mac").get("address") == "fa:62:4a:61:6c:00"
    address = interface.find("source/address")
    found = tuple(address.get(k) for k in ("type", "domain", "bus", "slot", "function"))
    assert found == ("pci", "0x0000", "0x3b", "0x02", "0x1")
    assert interface.find("vlan/tag").get("id") == "200"
    assert interface.find("boot").get("order") == "2"
    assert interface.find("model") is None and interface.find("target") is None


def test_sriov_vf_nic_without_a_vlan():
    vf = {**example()["nics"][0], "pciDeviceAddress": "0000:3b:02.1", "vlanId": None}
    assert domain(variant(nics=[vf])).find("devices/interface/vlan") is None


@pytest.mark.parametrize(
    ("fields", "addons", "path"),
    [
        ({"srcPath": "/var/run/vdpa0.sock"}, {}, "nics.0.srcPath"),
        ({}, {"NicQos": {"8f9ef2e5061a4b28b5f79ff24ab0c0ce": {"outboundBandwidth": 8192000}}}, "addons.NicQos."),
        ({"pciDeviceAddress": "3b:02"}, {}, "nics.0"),
    ],
)
def test_what_a_vf_nic_cannot_carry_is_refused_by_zstack_field(fields, addons, path):
    vf = {**example()["nics"][0], "pciDeviceAddress": "0000:3b:02.1", **fields}
    found = problems(variant(nics=[vf], addons=addons))
    assert any(key.startswith(path) for key in found), found


def test_the_ovs_dpdk_kinds_with_a_pci_address_are_still_refused_by_type():
    vdpa = {**example()["nics"][0], "type": "vDPA", "pciDeviceAddress": "0000:3b:02.1"}
    assert "nics.0.type" in problems(variant(nics=[vdpa]))


def test_nic_spec_problems_name_the_zstack_nic():
    nic = {**example()["nics"][0], "bridgeName": "a-bridge-name-far-too-long"}
    found = problems(variant(nics=[nic]))
    assert "(vmhost: nics.0.source)" in found["nics.0"]


# ---- clock track, emulator threads, vmport, ACPI sleep, crash action -----------------------------


def test_clock_track_guest_on_the_windows_rtc():
    rtc = domain(windows(clockTrack="guest")).find("clock/timer[@name='rtc']")
    assert (rtc.get("track"), rtc.get("tickpolicy")) == ("guest", "catchup")


def test_clock_track_is_checked():
    assert "clockTrack" in problems(windows(clockTrack="sundial"))


def test_emulator_pinning_addon_pins_qemus_own_threads():
    cmd = variant(addons={"emulatorPinning": "0-1"})
    assert domain(cmd).find("cputune/emulatorpin").get("cpuset") == "0-1"


def test_malformed_emulator_pinning_names_the_zstack_field():
    found = problems(variant(addons={"emulatorPinning": "first"}))
    assert "vmhost: cpu.emulator_pinning" in found["addons.emulatorPinning"]


def test_vm_port_off():
    assert domain(variant(vmPortOff=True)).find("features/vmport").get("state") == "off"
    assert domain(variant(vmPortOff=False)).find("features/vmport") is None


@pytest.mark.parametrize(("ram", "disk"), [(True, False), (False, True), (None, None)])
def test_acpi_sleep_states_are_always_written_as_the_agent_writes_them(ram, disk):
    pm = domain(variant(suspendToRam=ram, suspendToDisk=disk)).find("pm")
    found = (pm.find("suspend-to-mem").get("enabled"), pm.find("suspend-to-disk").get("enabled"))
    assert found == ("yes" if ram else "no", "yes" if disk else "no")


def test_on_crash_addon_is_the_domains_crash_action():
    assert domain(variant(addons={"onCrash": "coredump-restart"})).findtext("on_crash") == "coredump-restart"
    assert "addons.onCrash" in problems(variant(addons={"onCrash": "panic"}))


@pytest.mark.parametrize("addons", [{}, {"onCrash": None}, {"onCrash": ""}, None])
def test_without_on_crash_a_crashed_guest_is_preserved_as_zstacks_agent_does(addons):
    """make_meta: 'preserve' if addons.onCrash is None; the management node then sees the VM Crashed."""
    assert domain(variant(addons=addons)).findtext("on_crash") == "preserve"


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"coloPrimary": True}, "coloPrimary"),
        ({"coloSecondary": True}, "coloSecondary"),
        ({"useColoBinary": True}, "useColoBinary"),
        ({"cacheVolumes": [{"installPath": "/cache/1"}]}, "cacheVolumes"),
        ({"memorySnapshotPath": "/zs/snap/mem"}, "memorySnapshotPath"),
        ({"createPaused": True}, "createPaused"),
        ({"addons": {"userDefinedXml": "PGRvbWFpbi8+"}}, "addons.userDefinedXml"),
        ({"addons": {"userDefinedXmlHookScript": "IyEvYmluL3No"}}, "addons.userDefinedXmlHookScript"),
        ({"addons": {"qemuCommandLine": ["-S"]}}, "addons.qemuCommandLine"),
        ({"addons": {"qemuPath": "/opt/qemu/bin/qemu-kvm"}}, "addons.qemuPath"),
        ({"addons": {"loaderRom": "/usr/share/rom.bin"}}, "addons.loaderRom"),
        ({"addons": {"storageDevice": [{"wwid": "x"}]}}, "addons.storageDevice"),
        ({"addons": {"numaNodes": [{"nodeID": 0}]}}, "addons.numaNodes"),
        ({"addons": {"panicIsa": True}}, "addons.panicIsa"),
        ({"addons": {"panicHyperv": True}}, "addons.panicHyperv"),
        ({"addons": {"mdevDevice": ["83b8f4f2509f382f3c1e6e0d2b1a0f9e"]}}, "addons.mdevDevice"),
    ],
)
def test_what_vmhost_cannot_run_is_refused_naming_the_field(fields, path):
    assert problems(variant(**fields))[path]


@pytest.mark.parametrize("unset", [None, False, [], "", "false"])
def test_refused_fields_left_unset_change_nothing(unset):
    cmd = variant(coloPrimary=unset, createPaused=unset, cacheVolumes=unset)
    assert start_vm_spec(cmd) == start_vm_spec(example())


def test_nic_clean_traffic_at_start_filters_by_the_nics_last_ipv4():
    nic = {**example()["nics"][0], "cleanTraffic": True, "ips": ["10.0.0.5", "fd00::5", "10.0.0.6"]}
    filterref = domain(variant(nics=[nic])).find("devices/interface/filterref")
    assert filterref.get("filter") == "clean-traffic"
    assert [p.get("value") for p in filterref.iterfind("parameter[@name='IP']")] == ["10.0.0.6"]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"state": "disable"}, "nics.0.state"),
        ({"isolated": True}, "nics.0.isolated"),
        ({"cleanTraffic": True, "ips": ["fd00::5"]}, "nics.0.cleanTraffic"),
    ],
)
def test_nic_settings_vmhost_cannot_honour_at_start_are_refused(fields, path):
    assert problems(variant(nics=[{**example()["nics"][0], **fields}]))[path]


# ---- the spec's hostdev (SR-IOV VF) NIC, which VF NICs convert to ---------------------------------


def vf_spec(**nic: Any) -> dict[str, Any]:
    return {"name": "vf", "memory": "512MiB", "nics": [{"type": "hostdev", "source": "0000:3b:02.1", **nic}]}


def test_a_hostdev_nic_source_is_a_pci_address():
    assert parse_spec(vf_spec(source="3B:02.1")).nics[0].source == "0000:3b:02.1"
    with pytest.raises(SpecError, match="PCI address"):
        parse_spec(vf_spec(source="eth0"))


@pytest.mark.parametrize("field", [{"model": "e1000"}, {"tap": "vf0"}, {"mtu": 9000}, {"queues": 2}])
def test_a_hostdev_nic_has_no_emulated_settings(field):
    with pytest.raises(SpecError) as failure:
        parse_spec(vf_spec(**field))
    assert [p.path for p in failure.value.problems] == [f"nics.0.{next(iter(field))}"]


def test_only_a_hostdev_nic_takes_a_vlan():
    with pytest.raises(SpecError, match="vlan"):
        parse_spec({"name": "br", "memory": "512MiB", "nics": [{"type": "bridge", "source": "br0", "vlan": 5}]})


def test_guests_with_a_console_get_a_usb_tablet_as_in_zstack():
    assert domain(example()).find("devices/input[@type='tablet'][@bus='usb']") is not None


def test_appliance_vms_get_no_tablet_as_in_zstack():
    assert domain(variant(isApplianceVm=True)).find("devices/input") is None
