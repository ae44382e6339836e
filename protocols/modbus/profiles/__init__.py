"""The meter profiles shipped with the project (YAML files in this folder).

They are package data, so an installed gateway has them wherever it runs; ``config/profiles`` in
the source tree is a link to this folder. A deployment can add its own in another folder
(``profiles_dir`` in the concentrator's config).
"""

from pathlib import Path

__all__ = ["PROFILE_DIR"]

PROFILE_DIR = Path(__file__).resolve().parent
