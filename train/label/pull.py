"""``python -m topictone.train.label pull``: a Label Studio project's annotations, straight
into training rows.

Downloads the project's JSON export through ``label-studio-sdk`` (bounded as ``import``
bounds a file: ``ingest.MAX_EXPORT_BYTES``) and hands it to ``import`` itself: the same
checks, the same rows, the same ``append`` rule, every ``import`` setting (``pull.yaml``
starts from ``import.yaml``). Problems name the project instead of a downloaded file, e.g.
``error: http://localhost:8080 project 3: task 17 (ndtv:8812): annotation 40: no tone``.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from topictone.infer.cli import CONF_DIR, command
from topictone.infer.errors import TopictoneError
from topictone.train.label import ingest
from topictone.train.label.remote import Server

# The import command's own body, without its Hydra wrapper (``command`` keeps it as
# ``__wrapped__``): pull runs exactly what ``import input=<export>`` runs.
_run_import = inspect.unwrap(ingest.main)


@command(f"{CONF_DIR}/label", "pull")
def main(cfg: DictConfig) -> None:
    server = Server.from_cfg(cfg)
    project = server.project(cfg.project)
    if project is None:
        raise TopictoneError(f"{server.shown}: no project titled {str(cfg.project).strip()!r}")
    source = f"{server.shown} project {project.id}"
    with tempfile.TemporaryDirectory(prefix="topictone-pull.") as folder:
        export = Path(folder) / "export.json"
        with open(export, "wb") as sink:
            size = server.export(project, sink, ingest.MAX_EXPORT_BYTES, bool(cfg.all_tasks))
        print(f"{size} bytes exported from {project} at {server.shown}", file=sys.stderr)
        cfg.input = str(export)
        try:
            _run_import(cfg)
        except (TopictoneError, OSError) as err:
            # Name the project, not the temporary file.
            raise TopictoneError(str(err).replace(str(export), source)) from None


if __name__ == "__main__":
    main()
