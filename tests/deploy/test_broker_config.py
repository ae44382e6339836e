"""The broker ACLs grant what the MQTT contract needs and nothing more, in Mosquitto and EMQX alike.

The Mosquitto files run for real in test_broker_security.py; EMQX cannot run here, so its
``acl.conf`` is checked against the Mosquitto ``acl`` rule by rule, and its ``emqx.conf`` for the
settings that make the link secure.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from headend.pki import HEADEND_PREFIX
from protocols.link import Topic

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GATEWAY = "<gateway>"  # the placeholder: Mosquitto's %u, EMQX's ${username}

Grants = dict[str, set[tuple[str, str]]]  # who -> {(publish|subscribe, topic filter)}


def mosquitto_grants(text: str) -> Grants:
    """``pattern`` lines under the gateway placeholder, ``topic`` lines under their ``user``."""
    grants: Grants = {}
    user = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Mosquitto: only whole lines are comments
            continue
        words = line.split()
        if words[0] == "user":
            user = words[1]
            continue
        assert words[0] in ("pattern", "topic") and len(words) == 3, f"unexpected line: {line}"
        access, topic = words[1], words[2]
        who = GATEWAY if words[0] == "pattern" else user
        assert who is not None, f"a topic line outside a user block grants anonymous: {line}"
        actions = {
            "read": ["subscribe"],
            "write": ["publish"],
            "readwrite": ["publish", "subscribe"],
        }
        for action in actions[access]:
            grants.setdefault(who, set()).add((action, topic.replace("%u", GATEWAY)))
    return grants


_RULE = re.compile(r"\{(allow|deny),\s*(.*?)\}\s*\.\s*$", re.S | re.M)


def emqx_grants(text: str) -> tuple[Grants, str]:
    """The allow rules of an EMQX acl.conf, and its last rule."""
    body = "\n".join(line.split("%%", 1)[0] for line in text.splitlines())
    rules = [m.group(0).strip() for m in _RULE.finditer(body)]
    grants: Grants = {}
    for rule in rules[:-1]:
        match = re.fullmatch(
            r'\{allow,\s*(all|\{username,\s*"([^"]+)"\}),\s*(all|publish|subscribe),\s*\[(.*)\]\}\s*\.',
            rule,
            re.S,
        )
        assert match is not None, f"a rule this test does not understand: {rule}"
        who = match.group(2) or GATEWAY
        actions = ["publish", "subscribe"] if match.group(3) == "all" else [match.group(3)]
        for topic in re.findall(r'"([^"]+)"', match.group(4)):
            for action in actions:
                grants.setdefault(who, set()).add((action, topic.replace("${username}", GATEWAY)))
    return grants, rules[-1] if rules else ""


MOSQUITTO = mosquitto_grants((DEPLOY / "mosquitto" / "acl").read_text())
EMQX, EMQX_LAST = emqx_grants((DEPLOY / "emqx" / "acl.conf").read_text())


def test_a_gateway_may_publish_its_uplink_and_read_its_downlink_and_nothing_else() -> None:
    contract = {
        ("publish" if topic.uplink else "subscribe", f"amr/v1/gw/{GATEWAY}/{topic.value}")
        for topic in Topic
    }
    assert MOSQUITTO[GATEWAY] == contract


def test_headend_identities_reach_the_whole_contract_and_follow_the_naming_rule() -> None:
    headends = {who for who in MOSQUITTO if who != GATEWAY}
    assert headends == {"headend-1", "headend-2"}
    for name in headends:
        assert name.startswith(HEADEND_PREFIX)  # amr pki refuses gateway ids like these
        assert MOSQUITTO[name] == {("publish", "amr/v1/#"), ("subscribe", "amr/v1/#")}


def test_emqx_acl_grants_what_mosquitto_grants() -> None:
    assert EMQX.pop(GATEWAY) == MOSQUITTO[GATEWAY]
    shared = {("publish", "$share/headend/amr/v1/#"), ("subscribe", "$share/headend/amr/v1/#")}
    assert {who: grants - shared for who, grants in EMQX.items()} == {
        who: grants for who, grants in MOSQUITTO.items() if who != GATEWAY
    }
    assert EMQX_LAST == "{deny, all}."


@pytest.mark.parametrize(
    "setting",
    [
        "verify = verify_peer",
        "fail_if_no_peer_cert = true",
        "peer_cert_as_username = cn",
        "no_match = deny",
        "listeners.tcp.default.enable = false",
        'path = "/etc/emqx/acl.conf"',
        "max_mqueue_len = 100000",
    ],
)
def test_emqx_conf_has_the_settings_that_secure_the_link(setting: str) -> None:
    lines = [
        line.split("##", 1)[0].strip()
        for line in (DEPLOY / "emqx" / "emqx.conf").read_text().splitlines()
    ]
    assert any(setting in line for line in lines)


def test_the_parsers_see_a_widened_acl() -> None:
    widened = (
        (DEPLOY / "mosquitto" / "acl")
        .read_text()
        .replace("pattern read amr/v1/gw/%u/cmd", "pattern read amr/v1/gw/+/cmd")
    )
    assert mosquitto_grants(widened)[GATEWAY] != MOSQUITTO[GATEWAY]
    with pytest.raises(AssertionError, match="grants anonymous"):
        mosquitto_grants("topic readwrite #\n")
    loose, _ = emqx_grants('{allow, all, subscribe, ["amr/v1/gw/+/cmd"]}.\n{deny, all}.\n')
    assert loose[GATEWAY] != MOSQUITTO[GATEWAY]
