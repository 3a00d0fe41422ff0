"""libvirtd serves at most max_client_requests (5 by default) calls of one client at a time. The libvirt driver
opens a connection per thread, so parallel operations are that many clients of libvirtd, each with one call in
flight, and the default limit is no ceiling; the agent's event connection is a client of its own."""

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from vmhost.drivers.libvirt.driver import LibvirtDriver

URI = "qemu:///system"
THREADS = 8


def clients_of_this_process() -> set[str]:
    """libvirtd's client ids whose peer is this process (virt-admin asks libvirtd itself)."""
    listing = subprocess.run(
        ["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True, text=True, check=True
    ).stdout
    ids = [line.split()[0] for line in listing.splitlines()[2:] if line.strip()]
    mine = set()
    for client in ids:
        info = subprocess.run(
            ["virt-admin", "client-info", "libvirtd", client], capture_output=True, text=True, check=False
        ).stdout
        if f"unix_process_id: {os.getpid()}\n" in info:
            mine.add(client)
    return mine


def test_parallel_calls_are_each_a_client_of_libvirtd_of_their_own():
    driver = LibvirtDriver(URI, "tcg")
    before = clients_of_this_process()
    all_connected = threading.Barrier(THREADS)

    def call(_index: int) -> int:
        memory = driver.host_info().memory_total
        all_connected.wait(30)  # every thread holds its connection while the others open theirs
        return memory

    with ThreadPoolExecutor(THREADS) as pool:
        assert len(set(pool.map(call, range(THREADS)))) == 1
        new = clients_of_this_process() - before
    assert len(new) == THREADS, f"{THREADS} threads should be {THREADS} clients of libvirtd, not {len(new)}"


def test_a_thread_reuses_its_connection():
    driver = LibvirtDriver(URI, "tcg")
    assert driver.conn is driver.conn
    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(driver.conn))
    thread.start()
    thread.join(30)
    assert others and others[0] is not driver.conn
