"""A hostile co-party against the real enclave app: each attack of issue 13, and what stops it.

Every test plays the attacker through the real app (real keys, real sealed requests, the real
FastAPI app in process) and checks that it learns nothing beyond what the agreed results say.
Where an attack is a membership probe, the test runs it twice, once with the target present and
once without, and asserts that everything the attacker can read is the same in both worlds.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from oblv_mpc import keys, manifest
from oblv_mpc.attestation import DevelopmentCA, Measurements, SimulatedNsm
from oblv_mpc.client import EnclaveClient
from oblv_mpc.enclave import EnclaveSettings, create_app
from oblv_mpc.errors import EnclaveRefused, InputDataError, ManifestError
from oblv_mpc.limits import Limits
from oblv_mpc.protocol.commitment import commit
from tests.enclave.red_team_world import Enclave

Doc = dict[str, Any]


class Session:
    """A running enclave for one manifest, and a client per party."""

    def __init__(self, document: Doc, party_keys: dict[str, keys.PrivateKey], ca: DevelopmentCA, m: Measurements):
        self.manifest = manifest.from_data(document)
        self.app = create_app(self.manifest, SimulatedNsm(ca, m))
        http = TestClient(self.app)
        policy = ca.policy(m)
        self.clients = {p: EnclaveClient(http, self.manifest, party_keys[p], policy) for p in document["parties"]}

    def upload(self, party: str, table: str, csv: str) -> Any:
        return self.clients[party].upload(table, io.BytesIO(csv.encode()))

    def everything_readable_by(self, party: str) -> list[Any]:
        """Status and transcript as the attacker reads them, without times, ids and signatures."""
        status = self.clients[party].status()
        status.pop("instance")
        events = [(e.kind, e.data) for e in self.clients[party].transcript() if e.kind != "start"]
        return [status, events]


@pytest.fixture(scope="module")
def org_keys() -> dict[str, keys.PrivateKey]:
    return {name: keys.generate() for name in ("acme", "acme_eu", "globex", "alpha", "beta", "mallory")}


def _parties(org_keys: dict[str, keys.PrivateKey], *names: str) -> Doc:
    return {
        p: {"public_key": keys.to_base64(org_keys[p].public_key()), "roles": ["contributor", "reader"]} for p in names
    }


def _protected(columns: dict[str, str], unit: str, k: int, **rules: Any) -> Doc:
    return {"columns": columns, "key": [unit], "protection": {"unit": unit, "min_distinct": k, **rules}}


# -- 1. one table read through another's name ----------------------------------------------------


def test_colliding_table_names_never_share_data(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """acme.eu_customers and acme_eu.customers were both stored as _data_acme_eu_customers."""
    document = {
        "version": 1,
        "session": "collide",
        "parties": _parties(org_keys, "acme", "acme_eu"),
        "inputs": {
            "acme.eu_customers": _protected(
                {"email": "text"}, "email", 1, join_columns=["email"], list_columns=["email"]
            ),
            "acme_eu.customers": _protected(
                {"email": "text"}, "email", 1, join_columns=["email"], list_columns=["email"]
            ),
        },
        "computations": {
            "shared": {
                "template": "psi",
                "params": {"inputs": ["acme.eu_customers", "acme_eu.customers"], "column": "email"},
                "readers": ["acme_eu"],
            }
        },
    }
    session = Session(document, org_keys, dev_ca, measurements)
    session.upload("acme_eu", "customers", "email\nmallory@x\nshared@x\n")  # the attacker goes first
    session.upload("acme", "eu_customers", "email\nshared@x\n" + "".join(f"secret{i}@acme\n" for i in range(50)))
    result = session.clients["acme_eu"].result("shared")
    assert result.rows == [["shared@x"]]  # the true intersection, not acme's list


# -- 2. release-rule metadata as a membership oracle ---------------------------------------------


def _by_country(org_keys: dict[str, keys.PrivateKey], *, max_output_rows: int | None = None) -> Doc:
    computation: Doc = {
        "sql": (
            "SELECT g.country, count(*) AS group_size FROM acme.customers AS a "
            "JOIN globex.customers AS g USING (email) GROUP BY g.country ORDER BY g.country"
        ),
        "readers": ["acme", "globex"],
    }
    if max_output_rows is not None:
        computation["max_output_rows"] = max_output_rows
    return {
        "version": 1,
        "session": "by-country",
        "parties": _parties(org_keys, "acme", "globex"),
        "inputs": {
            "acme.customers": _protected({"email": "text", "signup_date": "date"}, "email", 10, join_columns=["email"]),
            "globex.customers": _protected(
                {"email": "text", "country": "text"}, "email", 10, join_columns=["email"], dimensions=["country"]
            ),
        },
        "computations": {"shared_by_country": computation},
    }


ACME_COMMON = [f"customer{i}@x" for i in range(40)]
TARGET = "target@victim"


def _acme_csv(with_target: bool) -> str:
    emails = ACME_COMMON + ([TARGET] if with_target else [])
    return "email,signup_date\n" + "".join(f"{e},2024-01-0{1 + i % 9}\n" for i, e in enumerate(emails))


def _probe_world(
    org_keys: dict[str, keys.PrivateKey],
    ca: DevelopmentCA,
    m: Measurements,
    with_target: bool,
    countries: tuple[str, ...] = ("US",),
    **kwargs: Any,
) -> tuple[Session, list[Any]]:
    session = Session(_by_country(org_keys, **kwargs), org_keys, ca, m)
    # globex, the attacker, labels only the target with a country of its own
    labels = "".join(f"{e},{countries[i % len(countries)]}\n" for i, e in enumerate(ACME_COMMON))
    globex = "email,country\n" + labels + f"{TARGET},ZZ\n"
    session.upload("globex", "customers", globex)
    session.upload("acme", "customers", _acme_csv(with_target))
    seen: list[Any] = []
    try:
        result = session.clients["globex"].result("shared_by_country")
        seen.append((result.columns, result.rows, result.suppressed_groups))
    except EnclaveRefused as exc:
        seen.append((exc.code, exc.reason))
    return session, seen


def test_a_country_label_does_not_tell_whether_a_target_is_a_customer(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    worlds = {}
    for with_target in (True, False):
        session, seen = _probe_world(org_keys, dev_ca, measurements, with_target)
        worlds[with_target] = (seen, _without_commitments(session.everything_readable_by("globex")))
    assert worlds[True] == worlds[False]
    ((_columns, rows, suppressed),) = worlds[True][0]
    assert rows == [["US", 40]] and suppressed is None  # the ZZ group is gone, and not counted either


def _without_commitments(readable: list[Any]) -> list[Any]:
    """Commitments are salted and differ every run; they carry nothing (test_commitments_...)."""
    text = re.sub(r"[0-9a-f]{64}", "<commitment>", repr(readable))
    return [text]


def test_a_withheld_run_is_one_answer_without_numbers_and_freezes_the_inputs(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    session, seen = _probe_world(org_keys, dev_ca, measurements, True, ("US", "FR"), max_output_rows=1)
    ((code, reason),) = seen
    assert code == "withheld"
    assert not re.search(r"\d", reason.replace("max_output_rows (1)", "")), reason  # no count of rows
    # the attacker cannot re-upload and probe again: the inputs froze at the attempt
    with pytest.raises(EnclaveRefused) as info:
        session.upload("globex", "customers", "email,country\nother@x,ZZ\n")
    assert info.value.code == "frozen"
    events = [(e.kind, e.data) for e in session.clients["globex"].transcript()]
    assert [kind for kind, _ in events if kind in ("attempt", "fetch")] == ["attempt", "fetch"]
    for _kind, data in events:
        assert "rows" not in data and "suppressed" not in data and data.get("code") != "withheld"


# -- 3. padding a group to release one salary ---------------------------------------------------


def _salaries(org_keys: dict[str, keys.PrivateKey], computation: Doc, **rules: Any) -> Doc:
    table = _protected(
        {"employee_id": "text", "job_level": "text", "salary": "float"},
        "employee_id",
        5,
        dimensions=["job_level"],
        join_columns=["employee_id"],
        aggregates={"salary": ["avg", "max"]},
        disclose_suppressed=True,
        **rules,
    )
    return {
        "version": 1,
        "session": "salaries",
        "parties": _parties(org_keys, "alpha", "beta"),
        "inputs": {"alpha.employees": table, "beta.employees": table},
        "computations": {"salaries": computation},
    }


AVERAGE_AND_TOP = {
    "template": "aggregate",
    "params": {
        "inputs": ["alpha.employees", "beta.employees"],
        "group_by": ["job_level"],
        "aggregates": {"average": {"avg": "salary"}, "top": {"max": "salary"}},
    },
    "readers": ["alpha", "beta"],
}
CEO_SALARY = 987_654.0


def _beta_csv() -> str:
    rows = [f"b{i},engineer,{100_000 + i}" for i in range(8)] + [f"b-ceo,ceo,{CEO_SALARY}"]
    return "employee_id,job_level,salary\n" + "\n".join(rows) + "\n"


def test_padding_rows_do_not_count_toward_an_owners_threshold(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    session = Session(_salaries(org_keys, AVERAGE_AND_TOP), org_keys, dev_ca, measurements)
    # alpha, the attacker, adds four fake CEOs at salary 0 to make the CEO group "big enough"
    fake = [f"a{i},engineer,90000" for i in range(8)] + [f"fake-ceo-{i},ceo,0" for i in range(4)]
    session.upload("alpha", "employees", "employee_id,job_level,salary\n" + "\n".join(fake) + "\n")
    session.upload("beta", "employees", _beta_csv())
    result = session.clients["alpha"].result("salaries")
    assert [row[0] for row in result.rows] == ["engineer"]
    assert CEO_SALARY not in [v for row in result.rows for v in row]


def test_sql_cannot_supply_its_own_group_size(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """The threshold is counted by the enclave: a group_size column the SQL computes means nothing."""
    padded = {
        "sql": "SELECT job_level, max(salary) AS top, 1000 AS group_size FROM beta.employees GROUP BY job_level",
        "readers": ["alpha"],
    }
    with pytest.raises(ManifestError, match="shape the enclave cannot check"):
        manifest.from_data(_salaries(org_keys, padded))
    honest_shape = {
        "sql": "SELECT job_level, max(salary) AS top FROM beta.employees GROUP BY job_level",
        "readers": ["alpha"],
    }
    session = Session(_salaries(org_keys, honest_shape), org_keys, dev_ca, measurements)
    session.upload("alpha", "employees", "employee_id,job_level,salary\na1,engineer,1\n")
    session.upload("beta", "employees", _beta_csv())
    result = session.clients["alpha"].result("salaries")
    assert [row[0] for row in result.rows] == ["engineer"] and result.suppressed_groups == 1


def test_a_repeated_join_key_cannot_make_a_group(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """Five copies of one id on the attacker's side would make a "group of five" of one person."""
    joined = {
        "template": "join_aggregate",
        "params": {
            "inputs": ["alpha.employees", "beta.employees"],
            "join_on": "employee_id",
            "group_by": ["alpha.employees.job_level"],
            "aggregates": {"top": {"max": "beta.employees.salary"}},
        },
        "readers": ["alpha"],
    }
    # The owners let each other's salaries be max'd over rows matched with their own (which matched
    # is then no secret): what is left to stop is the repeated key.
    allowed = {"allow_others_aggregates_in_joins": True}
    document = _salaries(org_keys, joined, **allowed)
    document["inputs"]["alpha.employees"] = {**document["inputs"]["alpha.employees"], "key": []}
    with pytest.raises(ManifestError, match=r"must be the key of alpha\.employees"):
        manifest.from_data(document)
    # with the key declared, the enclave refuses the copies on upload, and counts beta's own ids
    session = Session(_salaries(org_keys, joined, **allowed), org_keys, dev_ca, measurements)
    with pytest.raises(InputDataError, match="is not unique"):
        session.upload("alpha", "employees", "employee_id,job_level,salary\n" + "b-ceo,ceo,1\n" * 5)
    session.upload("alpha", "employees", "employee_id,job_level,salary\nb-ceo,ceo,1\n")
    session.upload("beta", "employees", _beta_csv())
    assert session.clients["alpha"].result("salaries").rows == []


# -- 4. differential privacy accounting ----------------------------------------------------------


def test_a_public_group_listed_many_times_is_refused(org_keys: dict[str, keys.PrivateKey]) -> None:
    """200 copies of one group would be 200 independent noisy copies: the median is the truth."""
    dp = {
        "template": "aggregate",
        "params": {
            "inputs": ["alpha.employees", "beta.employees"],
            "group_by": ["job_level"],
            "aggregates": {"average": {"avg": "salary"}},
        },
        "dp": {"epsilon": 1.0, "bounds": {"salary": [0, 1_000_000]}, "groups": {"job_level": ["ceo"] * 200}},
        "readers": ["alpha"],
    }
    document = _salaries(org_keys, dp, allow_dp=True)
    document["privacy_budget"] = {"epsilon": 1.0}
    with pytest.raises(ManifestError) as info:
        manifest.from_data(document)
    assert any("lists 'ceo' more than once" in p for p in info.value.problems)
    document["computations"]["salaries"]["dp"]["groups"] = {"job_level": ["ceo", "engineer"]}
    manifest.from_data(document)  # each group once is fine


# -- 5. plain hashes of small inputs -------------------------------------------------------------


def test_status_and_transcript_show_no_hash_a_guess_could_match(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    """beta's input is one yes/no: hashing both guesses must match nothing alpha can read."""
    document = {
        "version": 1,
        "session": "vote",
        "parties": _parties(org_keys, "alpha", "beta"),
        "inputs": {
            f"{p}.vote": {
                "columns": {"voter": "text", "yes": "boolean"},
                "key": ["voter"],
                "protection": {"unit": "voter", "min_distinct": 2, "aggregates": {}},
            }
            for p in ("alpha", "beta")
        },
        "computations": {
            "turnout": {
                "template": "aggregate",
                "params": {"inputs": ["alpha.vote", "beta.vote"], "aggregates": {"n": {"count": "*"}}},
                "readers": ["alpha", "beta"],
            }
        },
    }
    session = Session(document, org_keys, dev_ca, measurements)
    secret = "voter,yes\nbeta-ceo,true\n"
    receipt = session.upload("beta", "vote", secret)
    session.upload("alpha", "vote", "voter,yes\nalpha-ceo,false\n")
    turnout = session.clients["alpha"].result("turnout")  # one voter each: below both owners' thresholds
    assert turnout.rows == [] and turnout.suppressed_groups is None
    readable = repr(session.everything_readable_by("alpha"))
    guesses = [f"voter,yes\nbeta-ceo,{v}\n" for v in ("true", "false", "1", "0", "True", "False")]
    for guess in guesses:
        assert hashlib.sha256(guess.encode()).hexdigest() not in readable
    status = session.clients["alpha"].status()["inputs"]["beta.vote"]
    assert status["sha256"] is None and status["rows"] is None and status["commitment"] == receipt.commitment
    # the owner can still prove what it sent: the salt and the hash open the commitment
    assert receipt.sha256 == hashlib.sha256(secret.encode()).hexdigest()
    opened = commit(
        session="vote",
        manifest_sha256=session.manifest.hash,
        table="beta.vote",
        salt=bytes.fromhex(receipt.salt),
        sha256=receipt.sha256,
    )
    assert opened == status["commitment"]


# -- runaway and chance-dependent SQL ------------------------------------------------------------


def _one_query_session(
    org_keys: dict[str, keys.PrivateKey], ca: DevelopmentCA, measurements: Measurements, sql: str, limits: Limits
) -> Enclave:
    """alpha and beta, one integer each uploaded, and one free-SQL computation ``q`` alpha reads."""
    document = {
        "version": 1,
        "session": "one-query",
        "parties": _parties(org_keys, "alpha", "beta"),
        "inputs": {
            f"{p}.t": {"columns": {"x": "integer"}, "protection": {"release": "unrestricted"}}
            for p in ("alpha", "beta")
        },
        "computations": {"q": {"sql": sql, "readers": ["alpha"]}},
    }
    enclave = Enclave(document, org_keys, ca, measurements, EnclaveSettings(limits=limits))
    enclave.upload("alpha", "t", "x\n1\n")
    enclave.upload("beta", "t", "x\n2\n")
    return enclave


def test_a_runaway_query_is_stopped_at_the_time_limit_and_says_only_that(
    org_keys: dict[str, keys.PrivateKey], dev_ca: DevelopmentCA, measurements: Measurements
) -> None:
    forever = "WITH RECURSIVE r(n) AS (SELECT x FROM alpha.t UNION ALL SELECT n + 1 FROM r) SELECT count(*) AS n FROM r"
    clients = _one_query_session(org_keys, dev_ca, measurements, forever, Limits(compute_timeout_s=0.5)).clients
    with pytest.raises(EnclaveRefused) as info:
        clients["alpha"].result("q")
    assert info.value.code == "compute_limit"
    assert info.value.reason == "q: the computation was stopped at its time limit (0.5 s)"
    assert clients["beta"].status()["inputs"]["alpha.t"]["frozen"]


def test_a_query_past_the_memory_limit_stops_there_and_spills_no_rows_to_disk(
    org_keys: dict[str, keys.PrivateKey],
    dev_ca: DevelopmentCA,
    measurements: Measurements,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DuckDB's default for an in-memory database is to spill past its memory limit into ``.tmp``
    under the working directory: the parties' rows, in plaintext, on the host's disk."""
    monkeypatch.chdir(tmp_path)
    distinct = (  # a million distinct strings: ~5 s past 32 MiB when DuckDB may spill them
        "WITH RECURSIVE r(n) AS (SELECT x FROM alpha.t UNION ALL SELECT n + 1 FROM r WHERE n < 1000000) "
        "SELECT count(*) AS n FROM (SELECT DISTINCT n::VARCHAR || '-padding-padding-padding' FROM r)"
    )
    limits = Limits(compute_memory_bytes=32 * 1024 * 1024)
    clients = _one_query_session(org_keys, dev_ca, measurements, distinct, limits).clients
    with pytest.raises(EnclaveRefused) as info:
        clients["alpha"].result("q")
    assert info.value.code == "compute_limit"
    assert info.value.reason == "q: the computation was stopped at its memory limit (33,554,432 bytes)"
    assert list(tmp_path.iterdir()) == []  # no .tmp: nothing of the run was written anywhere


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("SELECT x, current_date AS d FROM alpha.t", "current_date is not allowed"),
        ("SELECT x, localtimestamp AS d FROM alpha.t", "localtimestamp is not allowed"),
        ("SELECT x FROM alpha.t USING SAMPLE 50%", "USING SAMPLE"),
        ("SELECT x FROM alpha.t TABLESAMPLE 50%", "USING SAMPLE"),
        ("SELECT txid_current() AS t FROM alpha.t", "txid_current() is not allowed"),
        ("SELECT INTERVAL 1 DAY AS i FROM alpha.t", "has type INTERVAL"),
        ("SELECT {'x': x} AS s FROM alpha.t", "has type STRUCT"),
    ],
)
def test_sql_depending_on_the_clock_or_chance_or_unencodable_is_refused_before_any_run(
    org_keys: dict[str, keys.PrivateKey], sql: str, found: str
) -> None:
    document = {
        "version": 1,
        "session": "clock",
        "parties": _parties(org_keys, "alpha", "beta"),
        "inputs": {
            f"{p}.t": {"columns": {"x": "integer"}, "protection": {"release": "unrestricted"}}
            for p in ("alpha", "beta")
        },
        "computations": {"c": {"sql": sql, "readers": ["alpha"]}},
    }
    with pytest.raises(ManifestError) as info:
        manifest.from_data(document)
    assert any(found in p for p in info.value.problems), info.value.problems
