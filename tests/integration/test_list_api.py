"""GET /v1/vms over a real agent and libvirt (defined domains, none booted): label, state and field selection and
pages on the agent; the CLI through the agent prints what local mode prints (and asks the agent to select); a
change made by another process (the local CLI) is in the agent's next answer."""

from typing import Any

import httpx


def page_names(http: httpx.Client, **params: Any) -> list[list[str]]:
    pages, response = [], http.get("/v1/vms", params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append([row["name"] for row in response.json()])
        if "next" not in response.links:
            return pages
        response = http.get(response.links["next"]["url"])


def test_the_agent_selects_and_pages_what_the_cli_lists_in_both_modes(agent, http, cli, guest_spec, vm_name):
    names = [vm_name(f"list-{index}") for index in range(3)]
    for name, tier in zip(names, ("web", "db", "web"), strict=True):
        created = http.post("/v1/vms", json=guest_spec(name, labels={"tier": tier}), params={"wait": "true"})
        assert created.json()["state"] == "succeeded", created.text
    web = [names[0], names[2]]
    selected = http.get("/v1/vms", params={"label.tier": "web", "state": "stopped", "fields": "name,labels"})
    assert selected.json() == [{"name": name, "labels": {"tier": "web"}} for name in web]
    assert page_names(http, limit=1, **{"label.tier": "web"}) == [[name] for name in web]
    assert page_names(http, limit=2, sort="-name") == [[names[2], names[1]], [names[0]]]

    remote = ("--agent", agent.url, "--token", agent.token)
    for args in (
        ("list", "-p", "-o", "name,state,labels", "label.tier=web"),
        ("list", "--json", "-s", "-name", "state=stopped"),
    ):
        local, over_http = cli(*args), cli(*remote, *args)
        assert over_http.returncode == 0, over_http.stderr
        assert local.stdout == over_http.stdout
    assert cli(*remote, "list", "-p", "-o", "name", "label.tier=web").stdout.split() == web
    refused = cli(*remote, "list", "colour=blue")
    assert refused.returncode == 2 and "cannot filter on 'colour'" in refused.stderr

    assert cli("delete", names[1]).returncode == 0  # another process writes the agent's store
    assert page_names(http) == [web]
