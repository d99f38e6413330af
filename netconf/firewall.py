"""The iptables rules the bridge needs, kept in chains of our own.

Docker sets the FORWARD policy to DROP, so without an ACCEPT for the bridge containers cannot reach each other
or the outside. The rules live in two chains named after the bridge (a test bridge gets its own)::

    filter  PYFAASD-FWD-<bridge>   jumped to from the top of FORWARD
      -i <bridge> -o <bridge> -j ACCEPT                                    between ports of the bridge
      -o <bridge> -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT    replies to connections they opened
      -i <bridge> ! -o <bridge> -j ACCEPT                                  from the containers outwards
    nat     PYFAASD-NAT-<bridge>   jumped to from the top of POSTROUTING
      -s <subnet> ! -o <bridge> -j MASQUERADE                              leaving the subnet

Connections from outside into the containers are not accepted: clients reach functions through the gateway,
which runs on the host. Each rule is added once (``iptables -C`` before ``-A``), so ``ensure_rules`` is
idempotent and never opens a window without rules. ``remove_rules`` deletes the jumps and the chains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network

from netconf.command import execute
from netconf.errors import IptablesError

IPTABLES = "iptables"
# Seconds iptables waits for the xtables lock held by another process (Docker, firewalld) before failing.
LOCK_WAIT_S = 10
CHAIN_PREFIX = "PYFAASD"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``args`` follow ``-A <chain>`` in table ``table``."""

    table: str
    chain: str
    args: tuple[str, ...]

    def spec(self) -> str:
        return " ".join(("-t", self.table, "-A", self.chain, *self.args))


@dataclass(frozen=True, slots=True)
class Chains:
    forward: str  # in table filter
    nat: str  # in table nat


def chains_for(bridge: str) -> Chains:
    """Chain names of a bridge, e.g. PYFAASD-FWD-pyfaasd0 (at most 27 characters: iptables allows 28)."""
    return Chains(forward=f"{CHAIN_PREFIX}-FWD-{bridge}", nat=f"{CHAIN_PREFIX}-NAT-{bridge}")


def rules_for(bridge: str, subnet: IPv4Network) -> list[Rule]:
    """The rules inside our chains, in order."""
    chains = chains_for(bridge)
    return [
        Rule("filter", chains.forward, ("-i", bridge, "-o", bridge, "-j", "ACCEPT")),
        Rule(
            "filter",
            chains.forward,
            ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ),
        Rule("filter", chains.forward, ("-i", bridge, "!", "-o", bridge, "-j", "ACCEPT")),
        Rule("nat", chains.nat, ("-s", str(subnet), "!", "-o", bridge, "-j", "MASQUERADE")),
    ]


def jumps_for(bridge: str) -> list[Rule]:
    """The jumps from the built-in chains into ours."""
    chains = chains_for(bridge)
    return [Rule("filter", "FORWARD", ("-j", chains.forward)), Rule("nat", "POSTROUTING", ("-j", chains.nat))]


async def ensure_rules(bridge: str, subnet: IPv4Network) -> list[Rule]:
    """Create our chains, their rules and the jumps, each only if missing; returns the rules added."""
    chains = chains_for(bridge)
    for table, chain in (("filter", chains.forward), ("nat", chains.nat)):
        await _ensure_chain(table, chain)
    added: list[Rule] = []
    for rule in rules_for(bridge, subnet):
        if not await _exists(rule):
            await _run(["-t", rule.table, "-A", rule.chain, *rule.args])
            added.append(rule)
    for jump in jumps_for(bridge):
        if not await _exists(jump):
            # At the top, so a DROP that another tool appends (or Docker's policy) does not shadow it.
            await _run(["-t", jump.table, "-I", jump.chain, "1", *jump.args])
            added.append(jump)
    return added


async def remove_rules(bridge: str) -> None:
    """Delete the jumps (every copy) and our chains; missing pieces are fine."""
    chains = chains_for(bridge)
    for jump, (table, chain) in zip(jumps_for(bridge), (("filter", chains.forward), ("nat", chains.nat)), strict=True):
        if not await _chain_exists(table, chain):
            continue  # no chain, so no jump to it (iptables -C would fail with exit 2)
        for _ in range(100):  # a bound, in case something keeps adding them back
            if not await _exists(jump):
                break
            await _run(["-t", jump.table, "-D", jump.chain, *jump.args])
        await _run(["-t", table, "-F", chain])
        await _run(["-t", table, "-X", chain])


async def list_rules(bridge: str) -> list[str]:
    """Our chains and jumps in ``iptables -S`` form, prefixed with the table; empty when nothing is installed."""
    chains = chains_for(bridge)
    lines: list[str] = []
    for table, builtin, chain in (("filter", "FORWARD", chains.forward), ("nat", "POSTROUTING", chains.nat)):
        for line in (await _run(["-t", table, "-S", builtin])).splitlines():
            if line.endswith(f"-j {chain}"):
                lines.append(f"-t {table} {line}")
        if await _chain_exists(table, chain):
            lines.extend(f"-t {table} {line}" for line in (await _run(["-t", table, "-S", chain])).splitlines())
    return lines


async def _ensure_chain(table: str, chain: str) -> None:
    if not await _chain_exists(table, chain):
        code, _, err = await _exec(["-t", table, "-N", chain])
        if code != 0 and "exist" not in err:  # "Chain already exists": another process was quicker
            raise IptablesError(f"iptables -t {table} -N {chain} failed (exit {code}): {err.strip()}")


async def _chain_exists(table: str, chain: str) -> bool:
    code, _, _ = await _exec(["-t", table, "-S", chain])
    return code == 0


async def _exists(rule: Rule) -> bool:
    """``iptables -C``: exit 0 if the rule is there, 1 if it (or its chain) is not, 2+ for a real error."""
    code, _, err = await _exec(["-t", rule.table, "-C", rule.chain, *rule.args])
    if code == 0:
        return True
    if code == 1:
        return False
    raise IptablesError(f"iptables -C {rule.spec()} failed (exit {code}): {err.strip()}")


async def _run(args: Sequence[str]) -> str:
    code, out, err = await _exec(args)
    if code != 0:
        raise IptablesError(f"iptables {' '.join(args)} failed (exit {code}): {err.strip()}")
    return out


async def _exec(args: Sequence[str]) -> tuple[int, str, str]:
    return await execute(
        [IPTABLES, "-w", str(LOCK_WAIT_S), *args], IptablesError, "netconf needs it for the bridge rules"
    )
