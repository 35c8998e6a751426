"""Definitions (entities, sources, feature tables, sample tables, training sets), their
validation, the versioned registry and the compiler to Flink SQL. Imports only `featurestore`.

Two equal ways in: YAML files in a feature repo (:func:`load_repo`) or objects built in Python
(:func:`build`). Both give the same :class:`Definitions`; :class:`Registry` plans and applies them.
"""

from registry.models import (
    BatchBinding,
    Condition,
    Definitions,
    Entity,
    Feature,
    FeatureTable,
    JoinKey,
    SampleTable,
    Source,
    StreamBinding,
    TrainingSet,
)
from registry.plan import Change, Plan
from registry.problems import Problem, RepoValidationError
from registry.repo import load_repo
from registry.store import Registry, Version, VersionInfo
from registry.validate import build
from registry.yaml_io import dump_yaml

__all__ = [
    "BatchBinding",
    "Change",
    "Condition",
    "Definitions",
    "Entity",
    "Feature",
    "FeatureTable",
    "JoinKey",
    "Plan",
    "Problem",
    "Registry",
    "RepoValidationError",
    "SampleTable",
    "Source",
    "StreamBinding",
    "TrainingSet",
    "Version",
    "VersionInfo",
    "build",
    "dump_yaml",
    "load_repo",
]
