"""Resuming an unfinished run: its saved config (made safe) and checkpoint, checked before
anything is written; the checkpoint loaded into a model; the data checked unchanged; and the
checkpoint saved after every ``checkpoint_every`` ticks."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from simrec import outputs
from simrec.config import EngineConfig, RunConfig
from simrec.data import Dataset
from simrec.errors import InputError
from simrec.simulator.model import SimulationModel
from simrec.simulator.rundir import STATE_DIR
from simrec.trust import config_from_run_dir

__all__ = ["check_same_data", "load_checkpoint", "prepare_resume", "save_checkpoint"]


def prepare_resume(
    run_dir: Path,
    allow_import: Iterable[str],
    base_url: str | list[str] | None,
    llm_cache: str | None,
    engine: EngineConfig | None = None,
    locations: dict[str, str | None] | None = None,
) -> tuple[RunConfig, dict | None]:
    """The saved config (made safe) and checkpoint of the unfinished run in ``run_dir``; checks
    everything and deletes nothing."""
    if outputs.is_run_manifest(run_dir / "manifest.json"):
        raise InputError(
            f"{run_dir}: the run is already complete (manifest.json exists); nothing to resume"
        )
    for sub in (STATE_DIR, "events"):
        if (run_dir / sub).is_symlink():
            raise InputError(
                f"{run_dir}: {sub}/ is a symbolic link; simrec resumes only a run directory it "
                f"wrote, and never writes or deletes through links"
            )
    state_file = run_dir / STATE_DIR / "config.json"
    if not state_file.is_file():
        raise InputError(
            f"{run_dir}: not an unfinished simrec run ({STATE_DIR}/config.json missing)"
        )
    saved = outputs.read_json(state_file, "a run's saved config")
    if not isinstance(saved.get("config"), dict) or not isinstance(saved.get("data_hashes"), dict):
        raise InputError(f"{state_file}: expected the fields config and data_hashes")
    cfg = config_from_run_dir(
        saved["config"],
        str(state_file),
        allow_import=allow_import,
        base_url=base_url,
        cache=llm_cache,
        engine=engine,
        locations=locations,
    )
    cfg.output.dir = str(run_dir)  # where the run is, not where its saved config says
    ckpt_file = run_dir / STATE_DIR / "checkpoint.npz"
    checkpoint = None
    if ckpt_file.is_symlink() or (ckpt_file.exists() and not ckpt_file.is_file()):
        raise InputError(f"{ckpt_file}: expected a regular file")
    if ckpt_file.is_file():
        try:
            with np.load(ckpt_file, allow_pickle=False) as z:
                checkpoint = {k: z[k] for k in z.files}
            next_part = int(checkpoint["part"][0])
        except (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as err:
            raise InputError(
                f"{ckpt_file}: truncated or corrupt checkpoint ({type(err).__name__}: {err}); "
                f"start over with --overwrite"
            ) from None
        if next_part < 0:
            raise InputError(f"{ckpt_file}: part: expected a part number >= 0, got {next_part}")
    return cfg, checkpoint


def load_checkpoint(run_dir: Path, model: SimulationModel, checkpoint: dict) -> None:
    try:
        model.load_state(checkpoint)
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise InputError(
            f"{run_dir / STATE_DIR / 'checkpoint.npz'}: does not match this run's config and "
            f"data ({type(err).__name__}: {err}); start over with --overwrite"
        ) from None


def check_same_data(run_dir: Path, data: Dataset) -> None:
    saved = json.loads((run_dir / STATE_DIR / "config.json").read_text())["data_hashes"]
    if saved != data.file_hashes:
        changed = sorted(set(saved.items()) ^ set(data.file_hashes.items()))
        raise InputError(
            f"{run_dir}: the input data changed since the run started "
            f"({', '.join(sorted({p for p, _ in changed}))}); cannot resume"
        )


def save_checkpoint(run_dir: Path, state: dict[str, np.ndarray], next_part: int) -> None:
    with outputs.replacing(run_dir / STATE_DIR / "checkpoint.npz", ".tmp.npz") as f:
        np.savez(f, part=np.array([next_part]), **state)
