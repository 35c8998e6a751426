"""Loading a feature repo directory into validated :class:`~registry.models.Definitions`."""

from __future__ import annotations

from pathlib import Path

import yaml
from featurestore.config import CONFIG_FILE, RepoConfig
from featurestore.errors import ConfigError, NotFoundError
from pydantic import ValidationError as PydanticValidationError

from registry import rules
from registry.models import Definitions
from registry.problems import Problem, RepoValidationError, raise_if
from registry.validate import bundle, check, to_models
from registry.yaml_io import NOT_YAML, parse_file, repo_files


def project_name(root: Path) -> str:
    """The ``project`` of the repo's featurestore.yaml (``default`` without one)."""
    path = root / CONFIG_FILE
    if not path.exists():
        return RepoConfig().project
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        project = RepoConfig.model_validate(raw).project
    except (yaml.YAMLError, PydanticValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return rules.safe_name(project, "project")
    except ValueError as exc:
        raise RepoValidationError([Problem(CONFIG_FILE, "", "project", str(exc))]) from None


def load_repo(repo: str | Path = ".") -> Definitions:
    """Read, build and check every definition of the repo at ``repo``.

    Raises :class:`~registry.problems.RepoValidationError` listing every problem found, each
    with file and line, when anything is wrong.
    """
    root = Path(repo).resolve()
    if not root.is_dir():
        raise NotFoundError(f"feature repo {str(repo)!r} is not a directory")
    project = project_name(root)
    raw_objects, problems = [], []
    for path in repo_files(root):
        found, file_problems = parse_file(path, root)
        raw_objects.extend(found)
        problems.extend(file_problems)
    built, model_problems, broken = to_models(raw_objects)
    problems.extend(model_problems)
    # A file that is not YAML hides its objects: checking references now would only add noise.
    if not any(p.reason.startswith(NOT_YAML) for p in problems):
        problems.extend(check(built, broken=broken))
    raise_if(problems)
    return bundle(project, [obj for obj, _ in built])
