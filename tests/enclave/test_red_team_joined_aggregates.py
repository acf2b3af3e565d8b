"""Red team 13: an aggregate of the attacker's own column over a join with hr's table.

The agreed SQL looks innocent: "how many of hr's staff are on mal's list, and the total of mal's
weight for them". But the joined rows are exactly hr's units that matched, and mal chose the
weights: 2^i for its i-th candidate makes the released sum a bitmask of which candidates are hr's
employees, one by one (grouped by hr's ``dept``: each one's department too). ``max`` of a rank
names the highest-ranked member; ``count(DISTINCT label)`` or ``count(label)`` of a label mal
gives one candidate alone say whether that one matched, while the threshold sees a big group.

Each attack runs in two worlds that differ only in whether ``boss`` works for hr; the attacker
must get the same in both. The fix: over a join with a protected table, another owner's columns
may only be counted (``count(*)``, counts of the join columns) and grouped by, unless the
protected table's owner declares ``allow_others_aggregates_in_joins`` (docs/manifest.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from oblv_mpc import keys
from oblv_mpc.attestation import DevelopmentCA, Measurements
from oblv_mpc.errors import ManifestError
from tests.enclave.red_team_world import Doc, Enclave, Keys, document, hr_staff, outcome

MAL_W = {
    "columns": {"id": "text", "w": "integer", "label": "text", "tag": "text"},
    "key": ["id"],
    "protection": {"release": "unrestricted"},
}
CANDIDATES = ["boss", "alice", "e0", "bob", "e1", "o1", "carol", "e2", "o0", "zed"]
JOIN = "FROM hr.staff AS s JOIN mal.t AS a ON s.id = a.id"


def _hr(boss: bool) -> str:
    """Three engineers, two ops people in dept eng, and the boss (in the other world: someone else)."""
    boss_id = "boss" if boss else "nobody"
    return (
        "dept,email,id,salary\n"
        + "".join(f"eng,e{i}@hr,e{i},{100_000 + i}\n" for i in range(3))
        + "".join(f"eng,o{i}@hr,o{i},{50_000 + i}\n" for i in range(2))
        + f"boss,{boss_id}@hr,{boss_id},987654\n"
    )


def _weights() -> str:
    """mal's candidates: weight 2^i each; a label of its own for the boss, and a tag for it alone."""
    return "id,label,tag,w\n" + "".join(
        f"{c},{'alone' if c == 'boss' else 'crowd'},{'it' if c == 'boss' else ''},{1 << i}\n"
        for i, c in enumerate(CANDIDATES)
    )


def _decode(mask: int) -> set[str]:
    return {c for i, c in enumerate(CANDIDATES) if mask >> i & 1}


def _attack(doc: Doc, org_keys: Keys, ca: DevelopmentCA, m: Measurements, *, boss: bool) -> tuple[Any, ...]:
    """What mal gets in the world with or without the boss: the refusal at validation, or its result."""
    try:
        enclave = Enclave(doc, org_keys, ca, m)
    except ManifestError as exc:
        return ("refused", str(exc))
    enclave.upload("mal", "t", _weights())
    enclave.upload("hr", "staff", _hr(boss))
    return outcome(enclave, "mal", "c")


def _both_worlds(doc: Doc, org_keys: Keys, ca: DevelopmentCA, m: Measurements) -> tuple[Any, ...]:
    """mal's outcome, asserted the same whether or not the boss is hr's."""
    with_boss = _attack(doc, org_keys, ca, m, boss=True)
    assert with_boss == _attack(doc, org_keys, ca, m, boss=False)
    return with_boss


@pytest.fixture(scope="module")
def org_keys() -> Keys:
    return {name: keys.generate() for name in ("hr", "mal")}


def _refusal(seen: tuple[Any, ...], expression: str) -> None:
    """The refusal names the column, the protected table, its owner, and what the owner would declare."""
    assert seen[0] == "refused"
    assert f"{expression} of mal.t (owner mal) over rows joined with protected hr.staff (owner hr)" in seen[1]
    assert "hr would have to declare allow_others_aggregates_in_joins: true in inputs.hr.staff.protection" in seen[1]


def test_summing_the_attackers_own_column_over_a_join_does_not_reveal_which_units_matched(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    doc = document(org_keys, f"SELECT count(*) AS n, sum(a.w) AS total {JOIN}", inputs={"mal.t": MAL_W})
    _refusal(_both_worlds(doc, org_keys, dev_ca, measurements), "sum(w)")


def test_summing_the_attackers_own_column_per_department_does_not_tell_each_persons_department(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    sql = f"SELECT s.dept, count(*) AS n, avg(a.w) AS mean {JOIN} GROUP BY s.dept"
    _refusal(_both_worlds(document(org_keys, sql, inputs={"mal.t": MAL_W}), org_keys, dev_ca, measurements), "avg(w)")


def test_the_join_aggregate_template_does_not_sum_the_attackers_column_over_hrs_matches(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    template = {
        "template": "join_aggregate",
        "params": {
            "inputs": ["hr.staff", "mal.t"],
            "join_on": "id",
            "group_by": [],
            "aggregates": {"total": {"sum": "mal.t.w"}},
        },
    }
    doc = document(org_keys, computation=template, inputs={"mal.t": MAL_W})
    _refusal(_both_worlds(doc, org_keys, dev_ca, measurements), "sum(w)")


def test_the_max_of_the_attackers_ranks_over_a_join_does_not_name_a_member(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """The boss ranked highest: if the boss were not hr's, the max would be another candidate's rank."""
    doc = document(org_keys, f"SELECT count(*) AS n, max(a.w) AS top {JOIN}", inputs={"mal.t": MAL_W})
    _refusal(_both_worlds(doc, org_keys, dev_ca, measurements), "max(w)")


@pytest.mark.parametrize("count", ["count(DISTINCT a.label)", "count(a.tag)"])
def test_counting_a_label_the_attacker_gave_one_candidate_does_not_tell_whether_it_matched(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements, count: str
) -> None:
    """Labelled apart (or the only one tagged), the boss would add one to a big group's count."""
    doc = document(org_keys, f"SELECT count(*) AS n, {count} AS labels {JOIN}", inputs={"mal.t": MAL_W})
    _refusal(_both_worlds(doc, org_keys, dev_ca, measurements), count.replace("a.", ""))


def test_grouping_by_the_attackers_label_over_a_join_still_counts_hrs_units_per_group(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """By design: groups of mal's labels, counts of the matches, each group under hr's threshold."""
    sql = f"SELECT a.label, count(*) AS n, count(a.id) AS ids, count(DISTINCT a.id) AS units {JOIN} GROUP BY a.label"
    seen = _both_worlds(document(org_keys, sql, inputs={"mal.t": MAL_W}), org_keys, dev_ca, measurements)
    assert seen[1] == [["crowd", 5, 5, 5]]  # the boss's group of one is suppressed in both worlds


def test_an_owner_that_allows_others_aggregates_in_joins_lets_them_be_released(
    org_keys: Keys, dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """hr declares it knowingly: which of its staff are on mal's list is then no secret."""
    inputs = {"mal.t": MAL_W, "hr.staff": hr_staff(allow_others_aggregates_in_joins=True)}
    doc = document(org_keys, f"SELECT count(*) AS n, sum(a.w) AS total {JOIN}", inputs=inputs)
    enclave = Enclave(doc, org_keys, dev_ca, measurements)
    enclave.upload("mal", "t", _weights())
    enclave.upload("hr", "staff", _hr(boss=True))
    [[n, total]] = enclave.clients["mal"].result("c").rows
    assert (n, _decode(int(total))) == (6, {"boss", "e0", "e1", "e2", "o0", "o1"})
