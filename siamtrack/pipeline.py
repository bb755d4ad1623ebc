"""The one training entry point: ``experiments/train.py --config experiments/<name>.yaml [--resume]``.

Stages run in the order the config lists them, each in ``<out_dir>/<name>/<stage>/`` with a
resumable ``last.pth`` and a weights-only ``final.pth``. A finished stage is skipped on ``--resume``,
so an interrupted pipeline picks up where it stopped. Stages:

* ``teacher``: train the full-width network from scratch (SiamFC schedule), or load
  ``teacher_weights`` when the config names a shipped teacher, or, with ``warm_start``, train on
  from earlier weights under a fresh schedule (a warm restart: ``--resume`` cannot lengthen a
  finished schedule, whose learning rate has already decayed to its floor).
* ``distill``, ``prune``, ``finetune`` (see ``siamtrack.compress``): the student stages.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from .checkpoint import (CheckpointError, atomic_save, load_model, model_from_checkpoint, plain_data, read_checkpoint,
                         save_checkpoint, sha256_file)
from .config import (DataConfig, ExperimentConfig, ModelConfig, TrackerConfig, TrainConfig, from_dict,
                     load_experiment, to_dict)
from .models import SiamNet, build_configured
from .training.stages import Stage
from .training.trainer import DistEnv, Trainer, setup_distributed



def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(cfg: ExperimentConfig, stage: str) -> dict[str, Any]:
    """What a checkpoint records about how it was made."""
    return {"stage": stage, "experiment": cfg.name, "config": to_dict(cfg), "git": git_revision(),
            "torch": str(torch.__version__), "python": platform.python_version(),
            "hardware": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def build_dataset(data_cfg: DataConfig, tracker_cfg: TrackerConfig):
    """Training pairs from ``data_cfg``'s sources, cut with the tracker's crop sides and context."""
    from .data.pairs import PairDataset  # data stack only when training
    return PairDataset.from_config(data_cfg, tracker_cfg)


def evaluate_checkpoint(path: Path, cfg: ExperimentConfig, out_dir: Path) -> dict[str, float]:
    """AO / SR0.5 / SR0.75 / success AUC / fps of a checkpoint on ``cfg.eval_root`` through the same
    benchmark code users run (``siamtrack benchmark``); empty when no root is configured."""
    if not cfg.eval_root:
        return {}
    from .evaluation.benchmark import BenchmarkOptions, run
    root = Path(cfg.eval_root)
    dataset = "got10k" if (root / cfg.eval_subset).is_dir() else "folder"
    result = run(BenchmarkOptions(dataset=dataset, root=str(root), subset=cfg.eval_subset,
                                  trackers=[str(path)], report_dir=str(out_dir), overwrite=True,
                                  progress=False), log=lambda msg: None)
    (scores,) = result["trackers"].values()
    return {k: float(scores[k]) for k in ("ao", "sr50", "sr75", "auc", "fps") if scores.get(k) is not None}


def profile_summary(net: SiamNet, tracker: TrackerConfig, path: Path | None = None) -> dict[str, float]:
    """Parameters, MACs per tracked frame (:func:`~.models.profile.tracker_costs`, at the tracker's
    own crop sizes and scales) and size on disk: the cost columns of the stage table."""
    from .models.profile import tracker_costs
    costs = tracker_costs(net, tracker)
    out = {"params": costs["params"], "macs": costs["macs"], "exemplar_macs": costs["exemplar_macs"],
           "search_crops": costs["scale_num"]}
    if path is not None and path.exists():
        out["bytes"] = path.stat().st_size
    return out


def score_checkpoint(path: Path, eval_root: str, eval_subset: str = "val") -> dict[str, float]:
    """Score the checkpoint at ``path`` on ``eval_root`` and write the metrics and the recounted stage
    summary into its meta (atomically; the weights and tracker settings untouched), as a finished
    stage has them: for a file trained where the evaluation could not run (a GPU machine without
    the got10k toolkit) or whose tracker settings changed after training. Returns the metrics; the
    benchmark's report is left in ``<path without suffix>.val/``."""
    ckpt = read_checkpoint(path)
    metrics = evaluate_checkpoint(path, ExperimentConfig(eval_root=eval_root, eval_subset=eval_subset),
                                  path.with_suffix(".val"))
    meta = dict(ckpt.get("meta", {}))
    summary = {"stage": meta.get("stage"),
               **profile_summary(model_from_checkpoint(ckpt), from_dict(TrackerConfig, ckpt["tracker"]), path),
               **metrics}
    ckpt["meta"] = dict(meta, metrics=plain_data(metrics), summary=plain_data(summary))
    atomic_save(ckpt, path)
    return metrics


def build_initialised(model: ModelConfig) -> tuple[SiamNet, dict[str, Any]]:
    """The network ``model`` names, randomly initialised or (``pretrained: imagenet``) with the
    ImageNet weights of its backbone's package; returns ``(net, {"init": provenance})`` for the
    checkpoint's meta (package, version and sha256 of the weights file, or ``"random"``)."""
    net = build_configured(model)
    if model.pretrained != "imagenet":
        return net, {"init": "random"}
    load = getattr(net.backbone, "load_imagenet", None)
    if load is None:
        raise ValueError(f"model {model.name!r} has no ImageNet weights; pretrained: imagenet needs "
                         f"an ImageNet backbone such as efficientnet_lite0")
    return net, {"init": {"imagenet": load()}}


def warm_start_parts(net: SiamNet, parent: SiamNet, parts: list[str]) -> SiamNet:
    """``net`` with its submodules ``parts`` (e.g. ``backbone``) copied strictly from ``parent``:
    a new head trains on features another run already tuned for tracking. A part whose shapes
    differ is an error naming it, not a silent partial load."""
    for part in parts:
        mine, theirs = getattr(net, part, None), getattr(parent, part, None)
        if not isinstance(mine, torch.nn.Module) or not isinstance(theirs, torch.nn.Module):
            raise ValueError(f"warm_start_parts: {part!r} is not a submodule of both networks")
        try:
            mine.load_state_dict(theirs.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"warm_start_parts: {part!r} of the warm-start weights does not fit "
                             f"the configured model: {exc}") from exc
    return net


def stage_registry() -> dict[str, Stage]:
    """The stages other packages register (through :data:`siamtrack.compress.stages.STAGES`), by name;
    imported when a run needs them, so a teacher-only run never loads the compression code."""
    from .compress.stages import STAGES as COMPRESS_STAGES

    return dict(COMPRESS_STAGES)


def check_stages(stages: list[str]) -> list[str]:
    """``stages`` unchanged, or a ``ValueError`` naming the unknown ones before anything trains."""
    if all(s == "teacher" for s in stages):
        return stages  # the pipeline's own stage: no need to load the registered ones
    known = ["teacher", *stage_registry()]
    unknown = [s for s in stages if s not in known]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {known}")
    return stages


class Pipeline:
    """Runs the configured stages; ``results[stage]`` collects each stage's summary row."""

    def __init__(self, cfg: ExperimentConfig, resume: bool = False, env: DistEnv | None = None,
                 max_steps: int | None = None, show_progress: bool = True) -> None:
        self.cfg = cfg
        self.resume = resume
        self.env = env or setup_distributed()
        self.max_steps = max_steps
        self.show_progress = show_progress
        self.root = Path(cfg.out_dir) / cfg.name
        self.results: dict[str, dict[str, Any]] = {}
        self.nets: dict[str, SiamNet] = {}

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def dataset(self, data_cfg: DataConfig):
        """Training pairs from ``data_cfg``, cut with this run's tracker settings."""
        return build_dataset(data_cfg, self.cfg.tracker)

    def finished(self, stage: str) -> SiamNet | None:
        """The stage's network when resuming finds its ``final.pth`` complete, else ``None``."""
        final = self.stage_dir(stage) / "final.pth"
        if self.resume and final.exists():
            net, _, meta = load_model(final)
            if meta.get("stopped_early"):
                return None  # written after --max-steps: train on from last.pth
            if self.cfg.eval_root and "ao" not in meta.get("metrics", {}):
                # an earlier run finished training but not its evaluation: evaluate now, keep the weights
                return self.finish_stage(stage, net, {k: v for k, v in meta.items()
                                                      if k not in ("metrics", "summary")})
            self.results[stage] = dict(meta.get("summary", {}), reused=True)
            return net
        return None

    def fit(self, stage: str, model: torch.nn.Module, net: SiamNet, loss_fn=None,
            train_cfg: TrainConfig | None = None, data_cfg: DataConfig | None = None,
            run_dir: Path | None = None, extra_meta: Mapping[str, Any] | None = None) -> tuple[SiamNet, dict]:
        """Fit ``model`` with the shared, resumable trainer; returns ``(net, meta)``."""
        cfg = self.cfg
        train_cfg = train_cfg or cfg.train
        torch.manual_seed(train_cfg.seed)
        trainer = Trainer(model, net, build_dataset(data_cfg or cfg.data, cfg.tracker), train_cfg,
                          run_dir or self.stage_dir(stage), cfg.tracker, loss_fn=loss_fn,
                          meta=dict(provenance(cfg, stage), **(extra_meta or {})),
                          env=self.env, show_progress=self.show_progress)
        if self.resume and trainer.resume():
            print(f"[{stage}] resumed at epoch {trainer.epoch}, step {trainer.step_in_epoch}", flush=True)
        trainer.fit(max_steps=self.max_steps)
        meta = trainer.meta | {"wall_s": round(trainer.wall_s, 1), "history": trainer.history,
                               "pairs_seen": trainer.pairs_seen}
        if trainer.epoch < train_cfg.epochs:  # --max-steps stopped it: --resume must not skip the stage
            meta["stopped_early"] = True
        return net, meta

    def train_stage(self, stage: str, model: torch.nn.Module, net: SiamNet, loss_fn=None,
                    train_cfg: TrainConfig | None = None, extra_meta: Mapping[str, Any] | None = None) -> SiamNet:
        """Fit, evaluate and write the stage's ``final.pth``."""
        net, meta = self.fit(stage, model, net, loss_fn, train_cfg, extra_meta=extra_meta)
        return self.finish_stage(stage, net, meta)

    def finish_stage(self, stage: str, net: SiamNet, meta: Mapping[str, Any]) -> SiamNet:
        """Evaluate ``net``, store the metrics with it, write ``final.pth`` (rank 0)."""
        if not self.env.main:
            return net
        net.eval()
        final = self.stage_dir(stage) / "final.pth"
        save_checkpoint(final, net, self.cfg.tracker, dict(meta))        # weights first: never lost
        tracker_cfg, fit = self.refit_confidence(stage, final)
        meta = dict(meta, confidence_fit=fit)
        try:
            metrics = evaluate_checkpoint(final, self.cfg, self.stage_dir(stage) / "eval")
        except Exception as exc:  # noqa: BLE001 - evaluation must never cost the trained weights
            print(f"[{stage}] evaluation failed, weights saved without metrics: {exc!r}", file=sys.stderr)
            metrics = {}
        summary = {"stage": stage, **profile_summary(net, self.cfg.tracker, final), **metrics}
        save_checkpoint(final, net, tracker_cfg, dict(meta, metrics=metrics, summary=summary))
        self.results[stage] = summary
        return net

    def refit_confidence(self, stage: str, final: Path) -> tuple[TrackerConfig, dict[str, Any]]:
        """Fit ``final``'s confidence and lost flag for its own weights (out of sample, written into
        the file) before it is evaluated, so no checkpoint ships another network's calibration;
        ``(tracker settings, fit report)``, or the configured settings and why the fit was skipped.
        A training-only machine without the got10k toolkit (a GPU box) skips the fit, saying so,
        instead of failing after the weights are trained."""
        cfg = self.cfg
        roots = [Path(r) / "train" if (Path(r) / "train").is_dir() else Path(r)
                 for r in (cfg.confidence_roots or cfg.data.got10k_roots)]
        roots = [r for r in roots if r.is_dir()]
        if cfg.confidence_frames <= 0 or not roots:
            why = "confidence_frames is 0" if roots else "no GOT-10k-layout training roots"
            return cfg.tracker, {"skipped": why}
        try:
            from .evaluation.calibrate import fit_checkpoint
        except ImportError as exc:  # the fit reads sequences through the got10k toolkit
            why = (f"the fit needs the evaluation packages ({exc}); fit later with "
                   f"experiments/confidence_fit.py --weights {final}")
            print(f"[{stage}] confidence not fitted: {why}", file=sys.stderr)
            return cfg.tracker, {"skipped": why}
        val = Path(cfg.eval_root) / cfg.eval_subset if cfg.eval_root else None
        try:
            report = fit_checkpoint(final, roots, [val] if val is not None and val.is_dir() else [],
                                    max_frames=cfg.confidence_frames,
                                    log=lambda text: print(f"[{stage}] confidence: {text}", flush=True))
        except ValueError as exc:  # e.g. a network that never loses (or never finds) the target
            print(f"[{stage}] confidence not fitted: {exc}", file=sys.stderr)
            return cfg.tracker, {"skipped": str(exc)}
        return load_model(final)[1], report

    # ---- stages --------------------------------------------------------------------------------
    def teacher(self) -> SiamNet:
        cfg = self.cfg
        if cfg.teacher_weights:
            net, _, meta = load_model(cfg.teacher_weights)
            self.results["teacher"] = dict(meta.get("summary", {}), loaded=cfg.teacher_weights)
            return net
        done = self.finished("teacher")
        if done is not None:
            return done
        torch.manual_seed(cfg.train.seed)
        if cfg.warm_start:
            net, _, parent = load_model(cfg.warm_start)
            origin = {"warm_start": {"path": cfg.warm_start, "sha256": sha256_file(cfg.warm_start),
                                     "parts": list(cfg.warm_start_parts) or "all",
                                     "pairs_seen": parent.get("pairs_seen"),
                                     "wall_s": parent.get("wall_s"),
                                     "metrics": parent.get("metrics", {})}}
            if cfg.warm_start_parts:
                net = warm_start_parts(build_configured(cfg.model), net, cfg.warm_start_parts)
            return self.train_stage("teacher", net, net, extra_meta=origin)
        net, origin = build_initialised(cfg.model)
        return self.train_stage("teacher", net, net, extra_meta=origin)

    def run(self, stages: list[str] | None = None) -> dict[str, dict[str, Any]]:
        stages = check_stages(stages or list(self.cfg.stages))
        for stage in stages:
            t0 = time.time()
            if stage == "teacher":
                self.nets["teacher"] = self.teacher()
            else:
                self.nets[stage] = stage_registry()[stage](self)
            print(f"[{stage}] done in {time.time() - t0:.0f} s: {self.results.get(stage, {})}", flush=True)
        return self.results

    def stage_weights(self) -> dict[str, Path]:
        """``{stage: final weights}`` for every stage with results, teacher first."""
        out: dict[str, Path] = {}
        for stage in self.results:
            if stage == "teacher" and self.cfg.teacher_weights:
                out[stage] = Path(self.cfg.teacher_weights)
            elif (self.stage_dir(stage) / "final.pth").exists():
                out[stage] = self.stage_dir(stage) / "final.pth"
        return out

    def stage_table(self, speed_frames: int = 50, threads: int = 2) -> str:
        """One row per stage: cost (parameters, MACs, size, ms per ``update`` measured side by side in
        one run) and val accuracy (from each checkpoint's stored metrics). Fills ``results``."""
        from .evaluation.report import fmt, markdown_table
        from .models.profile import format_macs

        weights = self.stage_weights()
        timing: dict[str, Any] = {}
        if speed_frames > 0 and weights:
            # timing imports the OpenCV baselines (got10k): a training-only machine skips it with 0
            from .evaluation.speed import SpeedOptions, run as measure_speed

            names = [f"SiamFC-{stage}" for stage in weights]
            speed = measure_speed(SpeedOptions(weights=[str(p) for p in weights.values()], names=names,
                                               threads=[threads], frames=speed_frames), log=lambda msg: None)
            timing = {stage: speed["models"][name] for stage, name in zip(weights, names)}
        rows = []
        for stage in weights:
            r = self.results[stage]
            t = timing.get(stage, {})
            r.update({k: t[k] for k in ("ms", "fps") if k in t})
            rows.append([stage, f"{r.get('params', 0):,}", format_macs(r.get("macs", 0)),
                         format_macs(r.get("exemplar_macs", 0)), f"{r.get('bytes', 0) / 1024:.0f} KiB",
                         fmt(r.get("ms"), 2), fmt(r.get("fps"), 1), fmt(r.get("ao")), fmt(r.get("sr50")),
                         fmt(r.get("sr75")), fmt(r.get("auc"))])
        return markdown_table(["stage", "params", "MACs/frame", "exemplar MACs (once)", "size",
                               f"ms/frame ({threads} threads)", "fps", "AO", "SR0.50", "SR0.75", "AUC"], rows)

    def ship(self, stage: str, dest: str | Path) -> Path:
        """Copy a stage's ``final.pth`` to ``dest`` (e.g. ``weights/siamfc_teacher.pth``)."""
        src = self.stage_dir(stage) / "final.pth"
        if not src.exists():
            raise CheckpointError(f"stage {stage!r} has no final weights at {src}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        return dest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .errors import OneLineParser  # the same one-line errors as the siamtrack command

    parser = OneLineParser(prog="train.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML file in experiments/")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of each stage")
    parser.add_argument("--stages", help="comma-separated subset of the configured stages")
    parser.add_argument("--ship", action="append", default=[], metavar="STAGE=PATH",
                        help="copy a finished stage's weights, e.g. teacher=weights/siamfc_teacher.pth")
    parser.add_argument("--max-steps", type=int, help="stop each stage after this many steps (smoke tests)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--speed-frames", type=int, default=50,
                        help="frames timed per stage for the final table (0: skip timing)")
    parser.add_argument("overrides", nargs="*", help="config overrides: train.lr=0.005 data.pairs_per_epoch=500")
    return parser.parse_intermixed_args(argv)  # key=value overrides may come before or after options


def _fail(exc: BaseException) -> int:
    from .errors import one_line

    print(f"train.py: error: {one_line(exc)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Bad arguments, configs and unreadable checkpoints (``--resume`` from a damaged ``last.pth``,
    a missing ``teacher_weights``) end with one ``train.py: error:`` line and exit code 2; other
    errors keep their traceback, since mid-run they are bugs to debug, not user input."""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 0
    try:
        cfg = load_experiment(args.config, args.overrides)
        stages = check_stages(args.stages.split(",") if args.stages else list(cfg.stages))
        ships = [s.split("=", 1) for s in args.ship]
        if any(len(s) != 2 for s in ships):
            raise ValueError("--ship takes STAGE=PATH")
        if cfg.warm_start_parts and not cfg.warm_start:
            raise ValueError(f"warm_start_parts={cfg.warm_start_parts} needs warm_start=PATH "
                             f"(the weights to copy them from)")
        if args.max_steps is not None and args.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1, got {args.max_steps}")
        if cfg.model.pretrained == "imagenet" and "teacher" in stages and not cfg.teacher_weights:
            build_initialised(cfg.model)  # a missing weights package fails here, not after data loading
    except (OSError, ValueError) as exc:
        return _fail(exc)
    pipeline = Pipeline(cfg, resume=args.resume, max_steps=args.max_steps,
                        show_progress=not args.no_progress)
    try:
        results = pipeline.run(stages)
        if pipeline.env.main:
            for stage, dest in ships:
                print(f"shipped {pipeline.ship(stage, dest)}")
    except CheckpointError as exc:
        return _fail(exc)
    if pipeline.env.main:
        print(pipeline.stage_table(args.speed_frames))
        report = pipeline.root / "report.json"
        report.write_text(json.dumps({"experiment": cfg.name, "stages": results}, indent=2, default=str))
        print(f"report: {report}")
    return 0
