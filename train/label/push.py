"""``python -m topictone.train.label push``: send the tasks ``select`` (or ``audit``) wrote
to a running Label Studio.

Creates the project (or finds it by title, or takes it by id) with the labelling config
``select`` wrote beside the tasks (``tasks.config.xml``; for a file without one, the
config of ``labels``), and imports the tasks with their predictions, in the file's order:
Label Studio pre-fills each task with the model's labels and, sampling sequentially, offers
them in that order (``select``'s pick order). Idempotent: a task whose ``topictone_id`` the
project holds already is not imported again, so a push that failed halfway is simply run
again. The token comes from the environment (``LABEL_STUDIO_API_KEY``) and is never
printed; every failure is one line naming the server's URL.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from topictone.infer.cli import CONF_DIR, command, integer_options
from topictone.infer.errors import InputError, TopictoneError
from topictone.infer.schema import LabelSchema
from topictone.infer.text import text_problem
from topictone.train.label import studio
from topictone.train.label.ingest import read_export
from topictone.train.label.remote import Project, Server, same_config
from topictone.train.label.texts import label_preset


def _task_key(task: Any, index: int, path: str) -> str:
    """The task's ``topictone_id``, after checking it is a task Label Studio can import."""
    where = f"task #{index + 1}"
    if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
        raise InputError(f"{where}: not a Label Studio task (no 'data' object)", path)
    data = task["data"]
    text = data.get(studio.TEXT)
    if not isinstance(text, str):
        raise InputError(f"{where}: data.{studio.TEXT} is missing or not a text", path)
    if problem := text_problem(text):
        raise InputError(f"{where}: data.{studio.TEXT}: {problem}", path)
    ident = data.get(studio.ID_KEY)
    if isinstance(ident, bool) or not isinstance(ident, str | int) or str(ident).strip() == "":
        raise InputError(
            f"{where}: data.{studio.ID_KEY} is missing (push finds tasks already sent by it)", path
        )
    if not isinstance(task.get("predictions", []), list):
        raise InputError(f"{where}: its predictions are not a list", path)
    return str(ident)


def _read_tasks(path: str) -> list[tuple[str, dict]]:
    """The file's tasks with their ids; one line for a bad file, task or repeated id."""
    try:
        tasks = read_export(path)
    except InputError as err:
        if err.reason.startswith("not a Label Studio JSON export"):
            raise InputError("not a list of Label Studio tasks (select writes one)", path) from None
        raise
    if not tasks:
        raise InputError("no task to push (an empty list)", path)
    keyed: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        key = _task_key(task, index, path)
        if key in seen:
            raise InputError(
                f"task #{index + 1}: {studio.ID_KEY} {key!r} repeats task #{seen[key] + 1}", path
            )
        seen[key] = index
        keyed.append((key, task))
    return keyed


def labelling_config(cfg: DictConfig) -> tuple[str, str]:
    """The config to give the project, and where it came from."""
    if cfg.config is not None:
        path = Path(cfg.config)
        if not path.is_file():
            raise InputError("no such file", path)
        return path.read_text(encoding="utf-8"), str(path)
    beside = studio.config_path(cfg.tasks)
    if beside.is_file():
        return beside.read_text(encoding="utf-8"), str(beside)
    schema = LabelSchema.from_dict(label_preset(cfg.labels))
    return studio.labelling_config(schema), f"labels={cfg.labels}"


def _first_version(tasks: list[tuple[str, dict]]) -> str | None:
    """The model version of the first prediction the tasks carry (select's model)."""
    for _, task in tasks:
        for guess in task.get("predictions") or []:
            if isinstance(guess, Mapping) and guess.get("model_version"):
                return str(guess["model_version"])
    return None


def _ready_project(server: Server, cfg: DictConfig, config_xml: str, source: str) -> Project:
    """The project to push to: found (its config checked) or created."""
    project = server.project(cfg.project)
    client = server.client
    if project is None:
        title = str(cfg.project).strip()
        made = server.call(
            f"create project {title!r}",
            lambda: client.projects.create(title=title, label_config=config_xml),
        )
        project = server.project_by_id(int(made.id))
        print(f"created {project} with the labelling config of {source}", file=sys.stderr)
        return project
    if not same_config(project.label_config, config_xml):
        if not cfg.update_config:
            raise TopictoneError(
                f"{server.shown}: {project} has another labelling config than {source}; "
                "set update_config=true to replace it (or push to another project)"
            )
        server.call(
            f"update the labelling config of {project}",
            lambda: client.projects.update(id=project.id, label_config=config_xml),
        )
        print(f"{project}: labelling config replaced by {source}", file=sys.stderr)
    return project


def _import_new(server: Server, project: Project, tasks: list[tuple[str, dict]], batch: int) -> int:
    """Import the tasks in batches; each POST is tried once (a retry could import a batch
    twice), and a push stopped halfway resumes where it stopped when run again."""
    done = 0
    for start in range(0, len(tasks), batch):
        part = [task for _, task in tasks[start : start + batch]]
        answer = server.call(
            f"import tasks into {project}",
            partial(
                server.client.projects.import_tasks,
                id=project.id,
                request=part,
                request_options={"max_retries": 0},
            ),
        )
        count = getattr(answer, "task_count", None)
        if count is not None and count != len(part):
            raise TopictoneError(
                f"{server.shown}: {project} took {count} of {len(part)} tasks "
                f"({done + count} of {len(tasks)} new tasks imported); push again"
            )
        done += len(part)
    return done


@command(f"{CONF_DIR}/label", "push")
def main(cfg: DictConfig) -> None:
    integer_options(cfg, {"batch_size": 1})
    batch = int(cfg.batch_size)
    tasks = _read_tasks(cfg.tasks)
    config_xml, source = labelling_config(cfg)
    server = Server.from_cfg(cfg)
    project = _ready_project(server, cfg, config_xml, source)
    there = {str(data.get(studio.ID_KEY)) for data in server.task_data(project)}
    new = [(key, task) for key, task in tasks if key not in there]
    if new:
        _import_new(server, project, new, batch)
        version = cfg.model_version or _first_version(new)
        if version and version != project.model_version:
            # Label Studio pre-fills a task with the predictions of the project's model version.
            server.call(
                f"set the model version of {project}",
                lambda: server.client.projects.update(id=project.id, model_version=version),
            )
            before = f" (was {project.model_version})" if project.model_version else ""
            print(f"{project}: pre-fills show model version {version}{before}", file=sys.stderr)
    print(
        f"{len(new)} tasks imported into {project}, {len(tasks) - len(new)} there already -> "
        f"{server.shown}/projects/{project.id}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
