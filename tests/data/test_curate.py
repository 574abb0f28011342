"""End-to-end curation: planted cases are caught, accounting balances, results are deterministic."""

from __future__ import annotations

import json

import pytest
from datautil import BOILER, read_out, tree_bytes

from olmoflow.data.curate import curate


@pytest.fixture(scope="module")
def planted_run(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("planted_out")
    stats = curate(planted["input"], out, recipe=planted["recipe"], decontaminate=[planted["eval"]],
                   workers=2, quiet=True)
    return out, stats


def test_accounting_balances_and_report_says_so(planted, planted_run):
    out, stats = planted_run
    acc = stats["accounting"]
    assert acc["docs_in"] == planted["n_docs"]
    assert acc["docs_in"] == acc["kept"] + acc["removed"] + acc["quarantined"]
    assert acc["balanced"]
    kept = read_out(out)
    removed = read_out(out, "removed")
    assert len(kept) == acc["kept"] and len(removed) == acc["removed"]
    assert "balanced" in (out / "report.md").read_text()
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["accounting"] == acc


def test_exact_duplicates_removed(planted_run):
    out, _ = planted_run
    kept, removed = read_out(out), read_out(out, "removed")
    assert "exact-a" in kept and "exact-b" not in kept
    assert removed["exact-b"]["reason"] == "exact_duplicate_text"


def test_near_duplicates_removed_but_dissimilar_kept(planted_run):
    out, stats = planted_run
    kept, removed = read_out(out), read_out(out, "removed")
    assert "near-a" in kept and "near-b" not in kept
    assert removed["near-b"]["removed_by"] == "minhash_dedup"
    assert "far-a" in kept and "far-b" in kept
    # the one planted pair and no spurious cluster (e.g. of the documents sharing boilerplate): the 45
    # documents that reach MinHash (48 less exact-b and the two eval leaks) are 43 singletons and one pair
    assert stats["histograms"]["minhash_cluster_sizes"] == {"1": 43, "2": 1}
    assert (out / "dedup_cluster_sizes.png").stat().st_size > 1000


def test_boilerplate_removed_from_all_but_first(planted, planted_run):
    out, _ = planted_run
    kept = read_out(out)
    ids = planted["boiler_ids"]
    assert BOILER in kept[ids[0]]["text"]
    for bid in ids[1:]:
        assert bid in kept, bid
        assert BOILER not in kept[bid]["text"]
        assert "Subscribe to our newsletter" not in kept[bid]["text"]
        assert len(kept[bid]["text"]) > 300  # the rest of the document stays
    attrs = read_out(out, "attributes")
    assert attrs[ids[1]]["attributes"]["substring_bytes_removed"] >= len(BOILER)


def test_contaminated_docs_reported_and_removed(planted_run):
    out, stats = planted_run
    kept, removed = read_out(out), read_out(out, "removed")
    assert "leak-long" not in kept and "leak-short" not in kept
    assert removed["leak-long"]["reason"] == "eval_contamination"
    assert "partial-long" in kept  # only a fragment of the item: not contamination
    report = json.loads((out / "decontamination.json").read_text())
    assert report["items"] == {"eval:long-1": ["leak-long"], "eval:short-1": ["leak-short"]}
    assert report["n_docs_removed"] == 2
    assert "eval:short-1" in (out / "report.md").read_text()


def test_pii_masked_with_counts(planted_run):
    out, stats = planted_run
    doc = read_out(out)["pii"]
    assert "jane.doe@example.com" not in doc["text"] and "|||EMAIL_ADDRESS|||" in doc["text"]
    assert "123-4567" not in doc["text"] and "|||PHONE_NUMBER|||" in doc["text"]
    assert "192.168.10.20" not in doc["text"] and "|||IP_ADDRESS|||" in doc["text"]
    c = stats["steps"]["pii"]["counters"]
    assert c["email_masked"] == 1 and c["phone_masked"] == 1 and c["ip_masked"] == 1
    assert read_out(out, "attributes")["pii"]["attributes"]["pii"] == {"email": 1, "ip": 1, "phone": 1}


def test_same_output_for_one_or_two_workers(planted, planted_run, tmp_path):
    out, _ = planted_run
    curate(planted["input"], tmp_path, recipe=planted["recipe"], decontaminate=[planted["eval"]],
           workers=1, quiet=True)
    assert tree_bytes(tmp_path) == tree_bytes(out)


def test_resume_after_injected_failure_matches_clean_run(planted, planted_run, tmp_path, monkeypatch):
    from olmoflow.data.pipeline import InjectedFailure

    out, _ = planted_run
    for fail_after in (1, 4):
        target = tmp_path / f"fail{fail_after}"
        monkeypatch.setenv("OLMOFLOW_DATA_FAIL_AFTER", str(fail_after))
        with pytest.raises(InjectedFailure):
            curate(planted["input"], target, recipe=planted["recipe"], decontaminate=[planted["eval"]],
                   workers=1, quiet=True)
        monkeypatch.delenv("OLMOFLOW_DATA_FAIL_AFTER")
        curate(planted["input"], target, recipe=planted["recipe"], decontaminate=[planted["eval"]],
               workers=1, quiet=True)
        assert tree_bytes(target) == tree_bytes(out)


def test_rerun_after_success_is_a_no_op(planted, planted_run):
    out, stats = planted_run
    before = tree_bytes(out)
    again = curate(planted["input"], out, recipe=planted["recipe"], decontaminate=[planted["eval"]],
                   workers=2, quiet=True)
    assert again["accounting"] == stats["accounting"]
    assert tree_bytes(out) == before
