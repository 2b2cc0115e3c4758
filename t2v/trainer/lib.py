"""The training loop behind `python -m t2v.trainer`, as a library function tests call directly.

    from t2v.trainer import run
    result = run(problem="stochastic_shapes", model="videoflow", hparams_set="videoflow_tiny",
                 output_dir="/tmp/run", train_steps=100)
    result["eval"]["bpp"]

One step, under any tf.distribute strategy:

  1. every replica computes `per_example_loss, metrics = model.compute_loss(batch, training=True)` on its slice
     of the global batch and the gradient of sum(per_example_loss) / global_batch;
  2. ONE all-reduce (SUM, inside the replica function) carries the gradients, the loss and metric sums, a
     count of replicas whose own loss or gradients were non-finite, and the stop flag (SIGTERM on any worker);
  3. every replica derives the same verdict from those identical reduced values: the step is applied only if no
     replica saw a non-finite value and the reduced loss and gradient norm are finite; gradients are clipped to
     hparams.clip_grad_norm by their global norm;
  4. back in cross-replica context, under tf.cond on that verdict, each replica's copy of each variable is
     updated with the reduced gradient through the optimizer's own `update_step` (decoupled weight decay first,
     as Keras' AdamW does) and `optimizer.iterations` is incremented. A skipped step changes neither weights
     nor optimizer state.

Why not `optimizer.apply_gradients`: Keras 3 (checked in 3.15, keras/src/backend/tensorflow/optimizer.py)
all-reduces (SUM) the gradients itself when called in a replica context and clips them before that all-reduce,
per replica; and its merge_call cannot sit inside a tf.cond in a replica function (MirroredStrategy raises
"merge_call called while defining a new graph"), while in cross-replica context `apply` fails outright. Calling
`update_step` per variable through `strategy.extended.update`, as Keras' own `_distributed_tf_update_step` does,
sums the gradients exactly once and makes skipping a plain tf.cond.

Data: every input pipeline builds the same global batch stream (problem.dataset(..., seed=seed).skip(step)),
keeps its own slice of each global batch and re-batches it per replica, so the global batch at every step is
the same whatever the number of replicas or workers, and a resumed run sees the batches an uninterrupted one
would.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import signal
import threading
import time
from typing import Any, Callable

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from t2v import registry
from t2v import video_io
from t2v.hparams import HParams
from t2v.models.base import VideoModel
from t2v.problems.spec import VideoSpec
from t2v.trainer import checkpointing
from t2v.trainer import config as config_lib
from t2v.trainer import optimizer as optimizer_lib
from t2v.trainer import strategy as strategy_lib
from t2v.trainer import summaries as summaries_lib
from t2v.trainer.config import ConfigError

_IMPORTED_AT = time.monotonic()  # the fallback origin of seconds_since_launch

# Features a model may read; problems' ground-truth extras (positions, colours...) are dropped.
MODEL_FEATURES = ("video", "label", "caption")

# How long a non-chief worker waits for the chief to generate a problem's data.
_DATA_WAIT_SECONDS = 600


# ---- the run -----------------------------------------------------------------------------------------

def run(*,
        problem: str | None = None,
        model: str = "videoflow",
        hparams_set: str | None = None,
        hparams_overrides: str | dict[str, Any] = "",
        output_dir: str | None = None,
        data_dir: str | None = None,
        problem_config: str | None = None,
        train_steps: int = 1500,
        eval_steps: int = 10,
        eval_every: int = 500,
        checkpoint_every: int = 250,
        keep_checkpoints: int = 3,
        log_every: int = 50,
        strategy: str = "auto",
        seed: int = 0,
        sample_temperature: float = 0.5,
        num_samples: int = 4,
        gif_fps: float = 4.0,
        allow_hparams_change: bool = False) -> dict[str, Any]:
  """Trains `model` on `problem` into `output_dir`, resuming from its latest checkpoint if it has one.

  Args:
    problem, model, hparams_set: registry names (t2v.registry); problem None is the model's default problem
      (registry.default_problem); hparams_set None is the model's default, or
      the set recorded in output_dir when resuming.
    hparams_overrides: "k=v,k2=v2" (or a dict) applied to the preset.
    output_dir: where config.json, checkpoints, summaries and samples go; default
      ./t2v_runs/<problem>-<model>-<hparams_set>.
    data_dir: the problem's TFDS data_dir (None: the problem's default).
    problem_config: the problem's config name (e.g. "tiny" for stochastic_shapes); None: its default.
    train_steps: total steps (including those of earlier runs in output_dir).
    eval_steps: batches per evaluation; 0 evaluates on the whole eval split.
    eval_every: evaluate every this many steps (0: only at the end); evaluation always runs at the end.
    checkpoint_every: save every this many steps (0: only at the start and end).
    keep_checkpoints: checkpoints kept.
    log_every: log and write train summaries every this many steps.
    strategy: one of t2v.trainer.strategy.STRATEGIES.
    seed: seeds initialisation, data order and samples.
    sample_temperature: temperature of the video samples written at each evaluation.
    num_samples: examples shown in each sample summary (0: none).
    gif_fps: frame rate of the sample GIFs.
    allow_hparams_change: resume even though hparams differ from those recorded in output_dir.

  Returns:
    {"step", "seconds_to_first_step" (since the process started; None if no step ran), "startup_seconds" (its
     phases: {"launch": imports and setup before training, "data", "model", "init", "checkpoint" or
     "restore", "input pipeline", "trace and first step"}), "train": {loss,
     metrics... averaged over the last log window}, "eval": {loss, metrics...},
     "skipped_steps", "restores", "lr_scale", "optimizer_iterations", "interrupted", "output_dir",
     "checkpoint"}.

  Raises:
    t2v.registry.RegistryError, t2v.hparams.HParamsError, ConfigError: before any work, for a bad name,
      hparams value, argument or output_dir.
    t2v.problems.base.DataNotFoundError: when the problem's data is not in data_dir.
  """
  problem = problem or registry.default_problem(model)
  _check_arguments(train_steps=train_steps, eval_steps=eval_steps, eval_every=eval_every,
                   checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, log_every=log_every,
                   seed=seed, sample_temperature=sample_temperature, num_samples=num_samples, gif_fps=gif_fps,
                   strategy=strategy)
  setup = _resolve(problem=problem, model=model, hparams_set=hparams_set, hparams_overrides=hparams_overrides,
                   output_dir=output_dir, data_dir=data_dir, problem_config=problem_config,
                   allow_hparams_change=allow_hparams_change)
  # Nothing above ran a TensorFlow op: MultiWorkerMirroredStrategy must be created first.
  distribution = strategy_lib.make_strategy(strategy)
  replicas = distribution.num_replicas_in_sync
  if setup.hparams.batch_size % replicas:
    raise ConfigError(f"hparams batch_size={setup.hparams.batch_size} is not divisible by the {replicas} replicas "
                      f"of --strategy={strategy}; use a multiple of {replicas}")
  trainer = _Trainer(setup, distribution, seed=seed, train_steps=train_steps, eval_steps=eval_steps,
                     eval_every=eval_every, checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                     log_every=log_every, sample_temperature=sample_temperature, num_samples=num_samples,
                     gif_fps=gif_fps)
  return trainer.train()


def _check_arguments(**values: Any) -> None:
  minimums = {"train_steps": 0, "eval_steps": 0, "eval_every": 0, "checkpoint_every": 0, "keep_checkpoints": 1,
              "log_every": 1, "seed": 0, "num_samples": 0}
  for name, minimum in minimums.items():
    value = values[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
      raise ConfigError(f"--{name}={value!r} must be an integer >= {minimum}")
  if not values["sample_temperature"] >= 0:
    raise ConfigError(f"--sample_temperature={values['sample_temperature']!r} must be >= 0")
  if not 0 < values["gif_fps"] <= 50:
    raise ConfigError(f"gif_fps={values['gif_fps']!r} must be in (0, 50]")
  if values["strategy"] not in strategy_lib.STRATEGIES:
    raise ConfigError(f"unknown strategy {values['strategy']!r}; valid strategies: "
                      f"{', '.join(strategy_lib.STRATEGIES)}")


# ---- names, hparams and output_dir, resolved before any TensorFlow op ---------------------------------

@dataclasses.dataclass
class _Setup:
  problem_name: str
  problem: Any  # t2v.problems.base.Problem
  model_name: str
  model_class: type[VideoModel]
  hparams_set: str
  hparams: HParams
  spec: VideoSpec
  output_dir: str
  config: dict[str, Any]
  resuming: bool  # output_dir holds a checkpoint
  write_config: bool  # config.json is new or changes


def _resolve(*, problem: str, model: str, hparams_set: str | None, hparams_overrides: str | dict[str, Any],
             output_dir: str | None, data_dir: str | None, problem_config: str | None,
             allow_hparams_change: bool) -> _Setup:
  registry.check_names(problem, model, hparams_set)
  if output_dir is None:
    output_dir = config_lib.default_output_dir(problem, model, hparams_set or registry.default_hparams_set(model))
  output_dir = os.path.abspath(os.path.expanduser(output_dir))
  recorded = config_lib.read_config(output_dir)
  config_lib.check_identity(recorded, output_dir, problem=problem, model=model)
  if problem_config is None and recorded is not None:  # resuming without --problem_config: the recorded one
    problem_config = recorded.get("problem_config")
  has_checkpoint = tf.train.latest_checkpoint(output_dir) is not None
  if has_checkpoint and recorded is None:
    raise ConfigError(f"output_dir {output_dir} holds checkpoints but no {config_lib.CONFIG_FILE}, so it was not "
                      "written by t2v.trainer (or was damaged); pick another --output_dir")
  if hparams_set is None and has_checkpoint:
    hparams_set = recorded["hparams_set"]
  hparams_set, hparams = config_lib.resolve_hparams(model, hparams_set, hparams_overrides)
  model_class = registry.model(model)
  if not isinstance(hparams, model_class.hparams_class):
    raise ConfigError(f"hparams set {hparams_set!r} gives {type(hparams).__name__}, but model {model!r} needs "
                      f"{model_class.hparams_class.__name__}; pick one of its hparams sets (--registry_help), "
                      f"e.g. {registry.DEFAULT_HPARAMS_SET.get(model)!r}")
  problem_object = _make_problem(problem, data_dir, problem_config)
  spec = problem_object.spec()
  config = config_lib.make_config(problem=problem, problem_config=_problem_config_name(problem_object),
                                  model=model, hparams_set=hparams_set, hparams=hparams, spec=spec.to_dict())
  # Compared once the problem is built: its config name is normalised (video_folder's "root=...,..." strings)
  config_lib.check_identity(recorded, output_dir, problem_config=config["problem_config"])
  write_config = True
  if has_checkpoint:
    changes = config_lib.compare(recorded, config, output_dir, allow_hparams_change)
    for key, (old, new) in changes.items():
      logging.warning("resuming %s with %s changed from %r to %r (--allow_hparams_change)", output_dir, key, old,
                      new)
    write_config = bool(changes)
  return _Setup(problem_name=problem, problem=problem_object, model_name=model, model_class=model_class,
                hparams_set=hparams_set, hparams=hparams, spec=spec, output_dir=output_dir, config=config,
                resuming=has_checkpoint, write_config=write_config)


def _make_problem(name: str, data_dir: str | None, problem_config: str | None):
  problem_class = registry.problem(name)
  if problem_config is None:
    return problem_class(data_dir=data_dir)
  if "config" not in inspect.signature(problem_class).parameters:
    raise ConfigError(f"problem {name!r} has no configs (got --problem_config={problem_config!r}); leave "
                      "--problem_config empty")
  try:
    return problem_class(data_dir=data_dir, config=problem_config)
  except ValueError as e:
    raise ConfigError(str(e)) from e


def _problem_config_name(problem) -> str | None:
  config = getattr(problem, "config", None)
  return config if isinstance(config, str) or config is None else getattr(config, "name", None)


def seconds_since_launch() -> float:
  """Wall seconds since this process started (Linux: from /proc; elsewhere: since t2v.trainer.lib was imported)."""
  try:
    with open("/proc/self/stat") as f:
      start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks since boot
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return time.monotonic() - _IMPORTED_AT


class _Phases:
  """Consecutive named spans of wall time, the first ("launch") from the process start."""

  def __init__(self):
    self.seconds = {"launch": seconds_since_launch()}
    self._last = time.monotonic()

  def mark(self, name: str) -> None:
    """Ends the span `name` now."""
    now = time.monotonic()
    self.seconds[name] = now - self._last
    self._last = now

  def __str__(self) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


# ---- input pipelines -----------------------------------------------------------------------------------

def _features(batch: dict[str, tf.Tensor], keys: tuple[str, ...]) -> dict[str, tf.Tensor]:
  return {key: batch[key] for key in keys if key in batch}


def _this_pipelines_share(ds: tf.data.Dataset, context: tf.distribute.InputContext,
                          global_batch: int) -> tf.data.Dataset:
  """From a stream of global batches, this input pipeline's slice of each, batched per replica.

  Pipeline p keeps examples [p * n, (p + 1) * n) of every global batch (n = global / pipelines); its replicas
  take consecutive per-replica batches of that slice, so replica r of the job sees examples
  [r * b, (r + 1) * b) of the global batch (b = global / replicas).
  """
  per_pipeline = global_batch // context.num_input_pipelines
  per_replica = context.get_per_replica_batch_size(global_batch)
  first = context.input_pipeline_id * per_pipeline
  ds = ds.map(lambda batch: {key: value[first:first + per_pipeline] for key, value in batch.items()})
  ds = ds.unbatch().batch(per_replica, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def _pad_batch(batch: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
  """Pads a (possibly partial) batch to `size` examples with zeros and adds `weight` (1 real, 0 padding)."""
  count = tf.shape(batch["video"])[0]
  missing = size - count
  padded = {"weight": tf.concat([tf.ones([count]), tf.zeros([missing])], 0)}  # [size]
  for key, value in batch.items():
    filler = tf.repeat(tf.zeros_like(value[:1]), missing, axis=0)  # [missing, ...]
    padded[key] = tf.concat([value, filler], 0)  # [size, ...]
  return padded


# ---- training ------------------------------------------------------------------------------------------

class _StopFlag:
  """Turns SIGTERM/SIGINT into a request to checkpoint and return; a second signal acts as usual."""

  def __init__(self):
    self.requested = False
    self._previous: dict[int, Any] = {}

  def install(self) -> None:
    if threading.current_thread() is not threading.main_thread():
      return  # signal handlers can only be installed from the main thread
    for signum in (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)

  def _handle(self, signum: int, frame) -> None:
    del frame
    self.requested = True
    logging.warning("received %s: saving a checkpoint after this step and stopping (send it again to stop at "
                    "once)", signal.Signals(signum).name)
    signal.signal(signum, self._previous.get(signum) or signal.SIG_DFL)

  def uninstall(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    self._previous.clear()


def _first_replica(strategy: tf.distribute.Strategy, values):
  """This worker's first replica's copy of values that are identical on every replica."""
  return tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0], values)


def learning_rate_schedule(step: tf.Tensor, *, learning_rate: float, warmup_steps: int, decay_steps: int,
                           train_steps: int) -> tf.Tensor:
  """Linear warm-up over `warmup_steps`, constant, linear decay to 0 over the last `decay_steps` of training.

  `step` counts the steps done before this update (0 for the first).
  """
  step = tf.cast(step, tf.float32)
  rate = tf.constant(learning_rate, tf.float32)
  if warmup_steps > 0:
    rate *= tf.minimum(1.0, (step + 1.0) / warmup_steps)
  if decay_steps > 0:
    rate *= tf.clip_by_value((train_steps - step) / decay_steps, 0.0, 1.0)
  return rate


class _Trainer:
  """State and loop of one run (see the module docstring for the step)."""

  def __init__(self, setup: _Setup, strategy: tf.distribute.Strategy, *, seed: int, train_steps: int,
               eval_steps: int, eval_every: int, checkpoint_every: int, keep_checkpoints: int, log_every: int,
               sample_temperature: float, num_samples: int, gif_fps: float):
    self.setup = setup
    self.strategy = strategy
    self.hparams = setup.hparams
    self.spec = setup.spec
    self.problem = setup.problem
    self.output_dir = setup.output_dir
    self.seed = seed
    self.train_steps = train_steps
    self.eval_steps = eval_steps
    self.eval_every = eval_every
    self.checkpoint_every = checkpoint_every
    self.keep_checkpoints = keep_checkpoints
    self.log_every = log_every
    self.sample_temperature = sample_temperature
    self.num_samples = num_samples
    self.gif_fps = gif_fps
    self.chief = strategy_lib.is_chief(strategy)
    self.global_batch = setup.hparams.batch_size
    self.keys = tuple(key for key in MODEL_FEATURES
                      if key == "video" or (key == "label" and setup.spec.num_labels > 0)
                      or (key == "caption" and setup.spec.has_caption))
    self.restores = 0

  # ---- building ----------------------------------------------------------------------------------------

  def _build(self) -> None:
    hp = self.hparams
    with self.strategy.scope():
      self.model = self.setup.model_class(hp, self.spec)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")
      self.lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")
      optimizer_class = keras.optimizers.AdamW if hp.weight_decay > 0 else keras.optimizers.Adam
      extra = {"weight_decay": hp.weight_decay} if hp.weight_decay > 0 else {}
      self.optimizer = optimizer_class(learning_rate=self.learning_rate, beta_1=hp.adam_beta1,
                                       beta_2=hp.adam_beta2, epsilon=hp.adam_epsilon, **extra)
    num_frames = self.model.num_train_frames
    clip_length = getattr(self.problem, "num_frames", num_frames)
    if not 1 <= num_frames <= clip_length:
      raise ConfigError(f"the model trains on windows of {num_frames} frames (hparams num_train_frames="
                        f"{hp.num_train_frames}), but {self.setup.problem_name} clips have {clip_length}; set "
                        f"num_train_frames in 1..{clip_length}")
    self.checkpoints = checkpointing.Checkpoints(
        self.output_dir, self.chief, self.keep_checkpoints, model=self.model, optimizer=self.optimizer,
        step=self.step, lr_scale=self.lr_scale, skipped_steps=self.skipped)
    self.summaries = summaries_lib.Summaries(self.output_dir, enabled=self.chief)

  def learning_rate(self) -> tf.Tensor:
    """The learning rate of the next update: the schedule at `step`, times `lr_scale`."""
    hp = self.hparams
    return learning_rate_schedule(self.step, learning_rate=hp.learning_rate, warmup_steps=hp.warmup_steps,
                                  decay_steps=hp.decay_steps, train_steps=self.train_steps) * self.lr_scale

  def _prepare_data(self) -> None:
    """The chief prepares the problem's data (generating it if the problem can); other workers wait for it."""
    if self.chief:
      self.problem.prepare()
      return
    deadline = time.monotonic() + _DATA_WAIT_SECONDS
    while not self.problem.is_prepared():
      if time.monotonic() > deadline:
        self.problem.prepare()  # raises the problem's own DataNotFoundError
        return
      time.sleep(1.0)

  def _agree(self, value: bool, what: str) -> None:
    """Fails unless every worker has the same `value` (one small all-reduce; also a barrier)."""
    if strategy_lib.task(self.strategy)[0] is None:
      return  # a single process agrees with itself
    flag = tf.constant(1.0 if value else 0.0)
    total = self.strategy.reduce(
        tf.distribute.ReduceOp.SUM,
        self.strategy.run(lambda: tf.identity(flag)), axis=None)
    if float(total) != (self.strategy.num_replicas_in_sync if value else 0):
      raise ConfigError(f"workers disagree on {what} (this one: {value}); every worker must see the same "
                        f"--output_dir {self.output_dir} (a shared filesystem)")

  def _initialize(self) -> None:
    """Data-dependent initialisation from one batch of a separate stream (seed + 1), then optimizer slots.

    It also runs on resume, to create every variable before the restore overwrites them.
    """
    hp = self.hparams
    ds = self.problem.dataset(self.problem.train_split, batch_size=hp.init_batch_size,
                              num_frames=self.model.num_train_frames, training=True, seed=self.seed + 1)
    batch = _features(next(iter(ds)), self.keys)
    with self.strategy.scope():
      self.model.initialize(batch)
      self.optimizer.build(self.model.trainable_variables)

  def _train_dataset(self, start_step: int):
    hp = self.hparams

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
      ds = self.problem.dataset(self.problem.train_split, batch_size=self.global_batch,
                                num_frames=self.model.num_train_frames, training=True, seed=self.seed)
      ds = ds.skip(start_step).map(lambda batch: _features(batch, self.keys))
      return _this_pipelines_share(ds, context, hp.batch_size)

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def _eval_dataset(self):
    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
      ds = self.problem.dataset(self.problem.eval_split, batch_size=self.global_batch,
                                num_frames=self.spec.num_frames, training=False)
      if self.eval_steps:
        ds = ds.take(self.eval_steps)
      ds = ds.map(lambda batch: _pad_batch(_features(batch, self.keys), self.global_batch))
      return _this_pipelines_share(ds, context, self.global_batch)

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  # ---- steps --------------------------------------------------------------------------------------------

  def _step_seed(self, step: tf.Tensor) -> tf.Tensor:
    """The stateless seed [2] of this replica's randomness at `step` (the model's dequantisation noise): a
    function of (seed, step, replica), so a resumed run draws the noise an uninterrupted one would."""
    context = tf.distribute.get_replica_context()
    replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
    index = tf.cast(step, tf.int64) * context.num_replicas_in_sync + replica
    return tf.cast(tf.stack([tf.constant(self.seed, tf.int64), index]) % (2 ** 31 - 1), tf.int32)

  def _make_train_step(self) -> Callable:
    strategy, model, optimizer, hp = self.strategy, self.model, self.optimizer, self.hparams
    variables = list(model.trainable_variables)
    if not variables:
      raise ConfigError(f"model {self.setup.model_name!r} has no trainable variables after initialize()")
    updated: list = []  # the variables that get a gradient, found when the replica step is traced

    def replica_step(batch, stop):
      batch = {**batch, "seed": self._step_seed(self.step)}
      with tf.GradientTape() as tape:
        per_example_loss, metrics = model.compute_loss(batch, training=True)  # [b], {name: [b]}
        loss = tf.reduce_sum(per_example_loss) / self.global_batch
      pairs = [(g, v) for g, v in zip(tape.gradient(loss, variables), variables) if g is not None]
      if len(pairs) < len(variables) and not updated:
        logging.warning("no gradient for %s: they are not trained",
                        ", ".join(v.path if hasattr(v, "path") else v.name
                                  for v in variables if all(v is not u for _, u in pairs)))
      updated[:] = [v for _, v in pairs]
      grads = [tf.convert_to_tensor(g) for g, _ in pairs]
      reduced = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, {
          "grads": grads,
          "loss": tf.reduce_sum(per_example_loss),
          "metrics": {name: tf.reduce_sum(value) for name, value in metrics.items()},
          "stop": tf.identity(stop),  # a copy on this replica's device: all_reduce needs one per replica
      })
      grads = reduced["grads"]
      grad_norm = tf.linalg.global_norm(grads)
      # A NaN or an infinity on any replica survives the sum (it makes the reduced value NaN or infinite), so the
      # reduced loss and norm tell every replica alike whether some replica's step was non-finite.
      ok = tf.math.is_finite(reduced["loss"]) & tf.math.is_finite(grad_norm)
      if hp.clip_grad_norm > 0:
        grads, _ = tf.clip_by_global_norm(grads, hp.clip_grad_norm, use_norm=grad_norm)
      report = {"loss": reduced["loss"] / self.global_batch, "grad_norm": grad_norm, "stop": reduced["stop"],
                **{name: value / self.global_batch for name, value in reduced["metrics"].items()}}
      return ok, grads, report

    # Adam as one fused kernel per variable on Keras Adam's slots (t2v/trainer/optimizer.py): a ~40 % smaller
    # graph to trace and optimise, the same update; other optimizers use their own update_step.
    fused = optimizer_lib.supports_fused_adam(optimizer)

    def update(variable, gradient, rate, *slots, constants=None):
      if hp.weight_decay > 0:  # decoupled weight decay, applied before the Adam step as Keras' AdamW does
        variable.assign_sub(variable * tf.cast(hp.weight_decay * rate, variable.dtype))
      if fused:
        optimizer_lib.fused_adam_update(variable, gradient, rate, *slots, constants)
      else:
        optimizer.update_step(gradient, variable, rate)

    # autograph=False: the models write their loops as tf.while_loop / tf.scan and branch on Python values
    # only, so AutoGraph's source conversion (about half of the tracing time of a VideoFlow step) buys nothing.
    @tf.function(autograph=False)
    def train_step(iterator, stop):
      batch = next(iterator)
      ok, grads, report = strategy.run(replica_step, args=(batch, stop))
      ok, report = _first_replica(strategy, (ok, report))
      rate = self.learning_rate()

      def apply():
        constants = optimizer_lib.adam_step_constants(optimizer) if fused else None
        for variable, gradient in zip(updated, grads):
          # the slots go in args, so that tf.distribute hands `update` this device's copy of each
          slots = optimizer_lib.adam_slots(optimizer, variable) if fused else ()
          strategy.extended.update(optimizer_lib.tf_variable(variable), update, args=(gradient, rate, *slots),
                                   kwargs={"constants": constants}, group=False)
        optimizer.iterations.assign_add(1)
        return tf.constant(True)

      applied = tf.cond(ok, apply, lambda: tf.constant(False))
      self.step.assign_add(1)
      self.skipped.assign_add(tf.cast(tf.logical_not(applied), tf.int64))
      return {**report, "ok": applied, "learning_rate": rate}

    return train_step

  def _make_eval_step(self) -> Callable:
    strategy, model = self.strategy, self.model

    def replica_step(batch):
      features = {key: value for key, value in batch.items() if key != "weight"}
      features["seed"] = self._step_seed(tf.constant(-1, tf.int64))  # the same noise at every evaluation
      real = batch["weight"] > 0  # [b]: False for padding
      per_example_loss, metrics = model.compute_loss(features, training=False)
      masked_sum = lambda value: tf.reduce_sum(tf.where(real, value, tf.zeros_like(value)))
      sums = {"loss": masked_sum(per_example_loss), **{name: masked_sum(v) for name, v in metrics.items()},
              "count": tf.reduce_sum(batch["weight"])}
      return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, sums)

    @tf.function(autograph=False)
    def eval_step(batch):
      return _first_replica(strategy, strategy.run(replica_step, args=(batch,)))

    return eval_step

  # ---- the loop -----------------------------------------------------------------------------------------

  def train(self) -> dict[str, Any]:
    stop_flag = _StopFlag()
    stop_flag.install()
    try:
      return self._train(stop_flag)
    except tf.errors.DataLossError as e:
      raise self._corrupt_record_error(e) from e
    finally:
      stop_flag.uninstall()
      if hasattr(self, "checkpoints"):
        self.checkpoints.close()
      if hasattr(self, "summaries"):
        self.summaries.close()

  def _corrupt_record_error(self, error: tf.errors.DataLossError) -> Exception:
    """tf.data's DataLossError does not name the file: read every record of both splits to find it."""
    from t2v.problems.base import CorruptRecordError  # pylint: disable=import-outside-toplevel
    for split in (self.problem.train_split, self.problem.eval_split):
      try:
        self.problem.check_records(split)
      except CorruptRecordError as named:
        return named
    return CorruptRecordError(f"corrupt input data in {self.setup.problem_name} ({error.message}); re-prepare "
                              "the dataset")

  def _train(self, stop_flag: _StopFlag) -> dict[str, Any]:
    setup = self.setup
    phases = _Phases()  # where the time to the first step goes, logged with it
    self._agree(setup.resuming, "whether output_dir holds a checkpoint to resume")
    self._prepare_data()
    phases.mark("data")
    # Seeded here, after the data: generating a problem's data (when data_dir does not hold it yet) draws from
    # the global generators, and the same --seed must give the same run whether or not it had to.
    keras.utils.set_random_seed(self.seed)
    self._build()
    phases.mark("model")
    self._initialize()
    phases.mark("init")
    if setup.resuming:
      path = self.checkpoints.latest()
      self.checkpoints.restore(path)
      logging.info("resumed %s at step %d", path, int(self.step.numpy()))
    if self.chief and setup.write_config:
      config_lib.write_config(self.output_dir, setup.config)
    step = int(self.step.numpy())
    if not setup.resuming:
      self.checkpoints.save(step)  # the "last good checkpoint" exists from the start
    phases.mark("restore" if setup.resuming else "checkpoint")
    train_step = self._make_train_step()
    self._eval_step = self._make_eval_step()
    logging.info("training %s on %s (%s) with %s, %d replica(s), from step %d to %d, into %s",
                 setup.model_name, setup.problem_name, setup.config["problem_config"], setup.hparams_set,
                 self.strategy.num_replicas_in_sync, step, self.train_steps, self.output_dir)

    iterator = iter(self._train_dataset(step))
    phases.mark("input pipeline")
    window = _Window()
    consecutive_nonfinite = 0
    interrupted = False
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    first_step_seconds = None
    while step < self.train_steps:
      out = {key: value.numpy() for key, value in train_step(iterator, tf.constant(float(stop_flag.requested)))
             .items()}
      step += 1
      if first_step_seconds is None:
        first_step_seconds = seconds_since_launch()
        phases.mark("trace and first step")
        logging.info("first step done %.1f s after launch (%s)", first_step_seconds, phases)
      if out["ok"]:
        consecutive_nonfinite = 0
        window.add(out)
      else:
        consecutive_nonfinite += 1
        window.skipped += 1
        logging.warning("step %d: non-finite loss or gradient (loss %s); update skipped (%d in a row)", step,
                        out["loss"], consecutive_nonfinite)
        if self.hparams.max_nonfinite_steps and consecutive_nonfinite >= self.hparams.max_nonfinite_steps:
          self._restore_after_nonfinite(step, consecutive_nonfinite)
          consecutive_nonfinite = 0
      if step % self.log_every == 0 or step == self.train_steps:
        train_metrics = self._log(step, window, float(out["learning_rate"]))
        window = _Window()
      if out["stop"] > 0:
        path = self.checkpoints.save(step)
        logging.warning("stopped by a signal at step %d; saved %s. Run the same command to resume.", step, path)
        interrupted = True
        break
      if self.checkpoint_every and step % self.checkpoint_every == 0 and not consecutive_nonfinite:
        self.checkpoints.save(step)  # never in a non-finite streak: the newest checkpoint is a good one
      if self.eval_every and step % self.eval_every == 0 and step < self.train_steps:
        started = time.monotonic()
        eval_metrics = self._evaluate(step)
        window.start += time.monotonic() - started  # steps/s measures training alone

    if not interrupted:
      path = self.checkpoints.save(step)
      eval_metrics = self._evaluate(step)
      logging.info("done: step %d, %s; eval %s; %d skipped step(s), %d restore(s); checkpoint %s", step,
                   _format(train_metrics), _format(eval_metrics), int(self.skipped.numpy()), self.restores, path)
    return {
        "step": step,
        "seconds_to_first_step": first_step_seconds,
        "startup_seconds": phases.seconds,
        "train": train_metrics,
        "eval": eval_metrics,
        "skipped_steps": int(self.skipped.numpy()),
        "restores": self.restores,
        "lr_scale": float(self.lr_scale.numpy()),
        "optimizer_iterations": int(self.optimizer.iterations.numpy()),
        "interrupted": interrupted,
        "output_dir": self.output_dir,
        "checkpoint": self.checkpoints.latest() if self.chief else None,
    }

  def _restore_after_nonfinite(self, step: int, count: int) -> None:
    """Restores model and optimizer from the newest checkpoint; step and data order go on, lr is scaled."""
    path = self.checkpoints.latest()
    if path is None:
      raise RuntimeError(f"{count} non-finite steps in a row and no checkpoint in {self.output_dir} to restore")
    skipped, scale = int(self.skipped.numpy()), float(self.lr_scale.numpy())
    self.checkpoints.restore(path)
    self.step.assign(step)
    self.skipped.assign(skipped)
    self.lr_scale.assign(scale * self.hparams.lr_factor_on_restore)
    self.restores += 1
    logging.warning("step %d: %d non-finite steps in a row; restored model and optimizer from %s and scaled the "
                    "learning rate by %g (lr_scale now %g)", step, count, path, self.hparams.lr_factor_on_restore,
                    float(self.lr_scale.numpy()))

  def _log(self, step: int, window: "_Window", learning_rate: float) -> dict[str, float]:
    elapsed = time.monotonic() - window.start
    steps_per_sec = (window.count + window.skipped) / elapsed if elapsed > 0 else float("nan")
    means = window.means()
    eta = (self.train_steps - step) / steps_per_sec if steps_per_sec > 0 else float("nan")
    bpp = f", bpp {means['bpp']:.4f}" if "bpp" in means else ""
    logging.info("step %d/%d: loss %.4f%s, %.2f steps/s, ETA %s", step, self.train_steps,
                 means.get("loss", float("nan")), bpp, steps_per_sec, _duration(eta))
    self.summaries.scalars("train", step, {
        **means, "learning_rate": learning_rate, "steps_per_sec": steps_per_sec,
        "skipped_steps": float(self.skipped.numpy())})
    return means

  def _evaluate(self, step: int) -> dict[str, float]:
    totals: dict[str, float] = {}
    for batch in self._eval_dataset():
      for name, value in self._eval_step(batch).items():
        totals[name] = totals.get(name, 0.0) + float(value)
    count = totals.pop("count", 0.0)
    if count == 0:
      raise ConfigError(f"the eval split {self.problem.eval_split!r} of {self.setup.problem_name} is empty")
    metrics = {name: value / count for name, value in totals.items()}
    logging.info("eval at step %d over %d examples: %s", step, int(count), _format(metrics))
    self.summaries.scalars("eval", step, metrics)
    if self.chief and self.num_samples:
      self._write_samples(step)
    return metrics

  def _write_samples(self, step: int) -> None:
    """Samples from the first eval examples' conditioning frames, as a GIF beside the ground truth."""
    spec = self.spec
    if not hasattr(self, "_sample_batch"):
      ds = self.problem.dataset(self.problem.eval_split, batch_size=self.num_samples, num_frames=spec.num_frames,
                                training=False)
      self._sample_batch = _features(next(iter(ds)), self.keys)
    batch = self._sample_batch
    context = batch["video"][:, :spec.num_input_frames]  # [N, Tc, H, W, C]
    inputs = {**batch, "video": context}
    with self.strategy.scope():
      generated = self.model.sample(inputs, num_frames=spec.num_target_frames,
                                    temperature=self.sample_temperature, seed=(self.seed, step))
    fake = np.concatenate([context.numpy(), np.asarray(generated)], axis=1)  # [N, T, H, W, C]
    real = batch["video"].numpy()  # [N, T, H, W, C]
    pairs = np.stack([real, fake], axis=1).reshape((-1,) + real.shape[1:])  # [2N, T, H, W, C]: real, fake, ...
    grid = video_io.tile_videos(pairs, columns=2)  # [T, H', W', C]
    gif = self.summaries.video_grid(
        "eval", "samples", step, grid, self.gif_fps,
        description=(f"left: ground truth, right: {spec.num_target_frames} frames sampled at temperature "
                     f"{self.sample_temperature} after {spec.num_input_frames} conditioning frame(s)"))
    path = os.path.join(self.output_dir, "samples", f"step_{step}.gif")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(gif)


class _Window:
  """Sums of the finite steps' metrics since the last log line."""

  def __init__(self):
    self.start = time.monotonic()
    self.count = 0
    self.skipped = 0
    self.sums: dict[str, float] = {}

  def add(self, out: dict[str, np.ndarray]) -> None:
    self.count += 1
    for name, value in out.items():
      if name not in ("ok", "stop", "learning_rate"):
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

  def means(self) -> dict[str, float]:
    if not self.count:
      return {"loss": float("nan")}
    return {name: value / self.count for name, value in self.sums.items()}


def _format(metrics: dict[str, float]) -> str:
  return ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items())) or "-"


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s"
