"""A corpus of broken repos: each gives one clear error with file and line, and changes nothing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from registry import RepoValidationError, load_repo
from registry.store import Registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ctr"
CORPUS = Path(__file__).parent / "registry_corpus"
CASES = sorted(CORPUS.glob("*.yaml"))


def _expectations(case: Path) -> dict[str, str]:
    found = dict(re.findall(r"^# (expect-file|expect-line|expect|hint): (.*)$", case.read_text(), flags=re.M))
    assert "expect-line" in found and "expect" in found, f"{case.name} needs '# expect-line:' and '# expect:'"
    return found


@pytest.fixture(scope="module")
def applied_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("ctr") / "ctr"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".featurestore"))
    registry = Registry.for_repo(repo)
    assert registry.apply(repo).id == 1
    registry.close()
    return repo


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_repo_gives_one_located_error_and_changes_nothing(
    case: Path, applied_repo: Path, tmp_path: Path
) -> None:
    expected = _expectations(case)
    repo = tmp_path / "repo"
    shutil.copytree(applied_repo, repo)
    shutil.copy(case, repo / "broken.yaml")
    registry = Registry.for_repo(repo)
    log_before, current_before = registry.log(), registry.get()

    with pytest.raises(RepoValidationError) as caught:
        registry.apply(repo)

    problems = caught.value.problems
    assert len(problems) == 1, "\n".join(str(p) for p in problems)
    problem = problems[0]
    where = f"{expected.get('expect-file', 'broken.yaml')}:{expected['expect-line']}"
    assert problem.location == where, str(problem)
    assert expected["expect"] in str(problem)
    if "hint" in expected:
        assert problem.hint == expected["hint"]
    assert str(caught.value).startswith(f"{where}: ")
    with pytest.raises(RepoValidationError):
        registry.plan(repo)
    assert registry.log() == log_before
    assert registry.get() == current_before
    registry.close()


def test_every_problem_of_a_repo_is_reported_at_once(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".featurestore"))
    for name in ("misspelt_column", "missing_reference", "unknown_field"):
        shutil.copy(CORPUS / f"{name}.yaml", repo / f"{name}.yaml")
    # three files define user_more_features: the duplicates are reported too
    with pytest.raises(RepoValidationError) as caught:
        load_repo(repo)
    text = str(caught.value)
    assert "problems in the feature repo" in text
    for fragment in ("misspelt_column.yaml:10", "missing_reference.yaml:5", "unknown_field.yaml:9"):
        assert fragment in text


def test_a_referenced_object_that_failed_is_not_reported_twice(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".featurestore"))
    text = (repo / "entities.yaml").read_text().replace("description: A signed-in", "descripton: A signed-in")
    (repo / "entities.yaml").write_text(text)
    with pytest.raises(RepoValidationError) as caught:
        load_repo(repo)
    assert [p.location for p in caught.value.problems] == ["entities.yaml:6"]
    assert caught.value.problems[0].hint == "did you mean 'description'?"


def test_avsc_path_must_stay_inside_the_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".featurestore"))
    text = (repo / "sources.yaml").read_text().replace("schemas/clicks.avsc", "../../etc/clicks.avsc")
    (repo / "sources.yaml").write_text(text)
    with pytest.raises(RepoValidationError, match=r"sources.yaml:\d+: Source clicks: avro_schema: .*'\.\.'"):
        load_repo(repo)


def test_sections_document_with_a_misspelt_section(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".featurestore"))
    (repo / "extra.yaml").write_text("entites:\n  - name: shop\n    join_keys: [{name: shop_id}]\n")
    with pytest.raises(RepoValidationError) as caught:
        load_repo(repo)
    (problem,) = caught.value.problems
    assert problem.location == "extra.yaml:1"
    assert problem.hint == "did you mean 'entities'?"
