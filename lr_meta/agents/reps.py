"""Episodic REPS over controller parameters (Daniel, Taylor, Nowozin 2016).

Daniel et al. 2016 learn the parameters theta of a step-size controller
``g(phi; theta) = exp(theta . phi)`` with episodic Relative Entropy Policy
Search (Peters, Muelling, Altun 2010): a Gaussian search distribution
``q(theta)`` (isotropic at the start) proposes one theta per training run;
after the runs return ``R_k``, the new distribution is

  p(theta) ∝ q(theta) exp(R(theta) / eta),   subject to KL(p || q) <= epsilon

(epsilon = 1 in the talk). Over the K samples, ``p_k ∝ exp(R_k / eta)`` and
``eta`` minimises the convex dual

  g(eta) = eta * epsilon + eta * log( (1/K) sum_k exp((R_k - R_max) / eta) )
           + R_max,

whose derivative is ``g'(eta) = epsilon - KL(p_eta || uniform)``: at the
optimum the weighted samples are exactly epsilon away (in KL) from the
uniform weights, unless even the greedy weights (eta -> 0) are closer, when
eta sits at its lower bound. ``solve_dual`` finds that root by bisection in
log(eta) (jittable, max-subtracted). The new Gaussian is the weighted
maximum-likelihood fit (mean and covariance, plus ``cov_reg * I``).

``make_reps`` runs the whole loop on an environment: each iteration samples
N thetas, runs N episodes with the deterministic controller
``controller_fn(theta, obs) -> action`` (by default linear in
``[obs, 1]``, i.e. Daniel's exp(theta . phi) when the environment's action is
a log step size) and updates the search distribution from the returns.
``make_reps_over_tasks`` does the same over a family of environments (the
talk's random small CNNs and data subsets): each iteration draws one member.
"""

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from lr_meta import distributed
from lr_meta.agents import _common


@dataclasses.dataclass(frozen=True)
class REPSConfig:
  """REPS settings.

  Attributes:
    num_samples: thetas (training runs) per iteration, K >= 2.
    epsilon: KL bound, > 0 (Daniel et al.: 1.0).
    init_mean: initial mean of every theta component.
    init_std: initial isotropic standard deviation, > 0.
    cov_reg: added to the diagonal of each new covariance, >= 0.
    dual_iterations: bisection steps in log(eta), >= 1.
    strategy: 'scan' or 'loop' (the rollout; see ``lr_meta.runner``).
  """
  num_samples: int = 16
  epsilon: float = 1.0
  init_mean: float = 0.0
  init_std: float = 1.0
  cov_reg: float = 1e-6
  dual_iterations: int = 100
  strategy: str = "scan"

  def __post_init__(self):
    _common.check_positive_int("num_samples", self.num_samples)
    if self.num_samples < 2:
      raise ValueError(f"num_samples={self.num_samples}; allowed: >= 2.")
    _common.check_in_range("epsilon", self.epsilon, 0.0, np.inf,
                           low_inclusive=False, high_inclusive=False)
    _common.check_in_range("init_mean", self.init_mean, -np.inf, np.inf,
                           low_inclusive=False, high_inclusive=False)
    _common.check_in_range("init_std", self.init_std, 0.0, np.inf,
                           low_inclusive=False, high_inclusive=False)
    _common.check_in_range("cov_reg", self.cov_reg, 0.0, np.inf,
                           high_inclusive=False)
    _common.check_positive_int("dual_iterations", self.dual_iterations)
    _common.check_choice("strategy", self.strategy, _common.STRATEGIES)


class SearchDistribution(NamedTuple):
  """Gaussian over theta: ``N(mean, cov)``."""
  mean: jax.Array   # [D]
  cov: jax.Array    # [D, D]


class REPSInfo(NamedTuple):
  eta: jax.Array
  dual: jax.Array            # g(eta)
  kl_weights: jax.Array      # KL(p || uniform) of the sample weights
  kl_gaussian: jax.Array     # KL(new Gaussian || old Gaussian)
  effective_sample_size: jax.Array
  weights: jax.Array         # [K] normalised p_k


@struct.dataclass
class REPSState:
  """The whole learner state; checkpoint it between iterations to resume."""
  dist: SearchDistribution
  rng: chex.PRNGKey
  iteration: jax.Array


class REPS(NamedTuple):
  """The agent's functions; ``policy_fn(theta, obs, carry)`` is the clipped
  controller action (carry ``()``, from ``initial_carry``); evaluate it with
  ``policy_params(state)``, the search distribution's mean."""
  init: Callable[[chex.PRNGKey], REPSState]
  update_iteration: Callable[[REPSState], Tuple[REPSState, Dict[str, Any]]]
  policy_fn: Callable[..., Tuple[jax.Array, Any]]
  initial_carry: Callable[..., Any]
  config: REPSConfig
  num_params: int


def policy_params(state) -> jax.Array:
  """The deterministic controller's theta: the search distribution's mean
  (Daniel et al. 2016)."""
  return state.dist.mean


def _normalised_weights(returns: jax.Array, eta: jax.Array) -> jax.Array:
  return jax.nn.softmax((returns - jnp.max(returns)) / eta)


def weights_kl(returns: jax.Array, eta: jax.Array) -> jax.Array:
  """KL(p_eta || uniform) of the REPS sample weights ``p ∝ exp(R / eta)``."""
  p = _normalised_weights(returns, eta)
  k = returns.shape[0]
  return jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-38) * k),
                           0.0))


def dual(eta: jax.Array, returns: jax.Array, epsilon: float) -> jax.Array:
  """The REPS dual g(eta) (Peters et al. 2010, episodic form), stable."""
  r_max = jnp.max(returns)
  lme = jax.nn.logsumexp((returns - r_max) / eta) - jnp.log(returns.shape[0])
  return eta * epsilon + eta * lme + r_max


def solve_dual(returns: jax.Array, epsilon: float,
               num_iterations: int = 100) -> jax.Array:
  """``argmin_{eta > 0} dual(eta)`` by bisection on ``g'(eta) = eps - KL``.

  The search interval in log(eta) is ``[log(1e-6 s), log(1e6 s)]`` with s the
  returns' range (``1e-8`` floor); KL(p_eta) falls monotonically in eta, so
  the root is bracketed unless the greedy KL (eta -> 0) is already below
  epsilon, when the lower end is returned. Jittable.

  Args:
    returns: [K] returns.
    epsilon: the KL bound.
    num_iterations: bisection steps (each halves the log-interval).

  Returns:
    eta, a scalar.
  """
  chex.assert_rank(returns, 1)
  returns = returns.astype(jnp.float32)
  scale = jnp.maximum(jnp.max(returns) - jnp.min(returns), 1e-8)
  lo = jnp.log(1e-6 * scale)
  hi = jnp.log(1e6 * scale)

  def body(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    too_greedy = weights_kl(returns, jnp.exp(mid)) > epsilon  # g' < 0
    return jnp.where(too_greedy, mid, lo), jnp.where(too_greedy, hi, mid)

  lo, hi = jax.lax.fori_loop(0, num_iterations, body, (lo, hi))
  return jnp.exp(hi)


def gaussian_kl(p: SearchDistribution, q: SearchDistribution) -> jax.Array:
  """KL(p || q) between two multivariate Gaussians."""
  d = p.mean.shape[0]
  q_chol = jnp.linalg.cholesky(q.cov)
  solve = lambda b: jax.scipy.linalg.cho_solve((q_chol, True), b)
  diff = q.mean - p.mean
  logdet_q = 2.0 * jnp.sum(jnp.log(jnp.diag(q_chol)))
  logdet_p = jnp.linalg.slogdet(p.cov)[1]
  return 0.5 * (jnp.trace(solve(p.cov)) + diff @ solve(diff) - d + logdet_q
                - logdet_p)


def sample_thetas(key: chex.PRNGKey, dist: SearchDistribution,
                  num: int) -> jax.Array:
  """``num`` samples [num, D] from the search distribution."""
  chol = jnp.linalg.cholesky(dist.cov)
  z = jax.random.normal(key, (num, dist.mean.shape[0]), dist.mean.dtype)
  return dist.mean + z @ chol.T


def reps_update(thetas: jax.Array, returns: jax.Array,
                dist: SearchDistribution, epsilon: float, cov_reg: float = 0.0,
                dual_iterations: int = 100
                ) -> Tuple[SearchDistribution, REPSInfo]:
  """One episodic REPS step: weights from the dual, weighted ML Gaussian.

  Args:
    thetas: [K, D] samples from ``dist``.
    returns: [K] their returns.
    dist: the current (sampling) distribution q.
    epsilon: KL bound.
    cov_reg: added to the new covariance's diagonal.
    dual_iterations: bisection steps.

  Returns:
    (new distribution, ``REPSInfo``).
  """
  chex.assert_rank([thetas, returns], [2, 1])
  chex.assert_equal_shape_prefix([thetas, returns], 1)
  eta = solve_dual(returns, epsilon, dual_iterations)
  w = _normalised_weights(returns, eta)
  mean = w @ thetas
  centred = thetas - mean
  cov = (w[:, None] * centred).T @ centred
  cov = 0.5 * (cov + cov.T) + cov_reg * jnp.eye(thetas.shape[1])
  new = SearchDistribution(mean=mean, cov=cov)
  info = REPSInfo(eta=eta, dual=dual(eta, returns, epsilon),
                  kl_weights=weights_kl(returns, eta),
                  kl_gaussian=gaussian_kl(new, dist),
                  effective_sample_size=1.0 / jnp.sum(w**2), weights=w)
  return new, info


def linear_controller(theta: jax.Array, obs: jax.Array,
                      action_shape: Tuple[int, ...]) -> jax.Array:
  """``action = W [obs, 1]`` with ``W = theta.reshape(A, obs_size + 1)``."""
  features = jnp.concatenate([obs, jnp.ones(obs.shape[:-1] + (1,))], -1)
  w = theta.reshape(int(np.prod(action_shape)), features.shape[-1])
  return (features @ w.T).reshape(obs.shape[:-1] + tuple(action_shape))


def make_reps(config: REPSConfig, env, env_params,
              controller_fn: Optional[Callable[[jax.Array, jax.Array],
                                               jax.Array]] = None,
              num_params: Optional[int] = None,
              mesh: Optional[jax.sharding.Mesh] = None) -> REPS:
  """Builds episodic REPS for a continuous-action ``env``.

  Args:
    config: a ``REPSConfig``.
    env: environment with ``observation_size`` and ``action_shape/low/high``.
    env_params: its parameters; ``num_decisions`` is T.
    controller_fn: ``(theta [D], obs [obs_size]) -> action`` (deterministic).
      Default: ``linear_controller``.
    num_params: D; required with a custom ``controller_fn``.
    mesh: shard the K runs over this device mesh (``_common``); the rewards
      are gathered before the update.

  Returns:
    A ``REPS`` of functions; ``policy_fn(theta, obs, carry)`` is the clipped
    controller action (evaluate with ``policy_params(state)``).
  """
  horizon = _common.num_decisions(env_params)
  action_shape, low, high = _common.action_bounds(env)
  if controller_fn is None:
    if num_params is None:
      num_params = int(np.prod(action_shape)) * (env.observation_size + 1)
    controller_fn = lambda theta, obs: linear_controller(theta, obs,
                                                         action_shape)
  elif num_params is None:
    raise ValueError("num_params=None; a custom controller_fn needs "
                     "num_params (the length of theta), >= 1.")
  _common.check_positive_int("num_params", num_params)
  k = config.num_samples

  def act(theta, obs):
    return jnp.clip(controller_fn(theta, obs), low, high)

  def policy_fn(theta, obs, carry=()):
    return act(theta, obs), carry

  def init(key: chex.PRNGKey) -> REPSState:
    dist = SearchDistribution(
        mean=jnp.full((num_params,), config.init_mean, jnp.float32),
        cov=config.init_std**2 * jnp.eye(num_params, dtype=jnp.float32))
    return REPSState(dist=dist, rng=key, iteration=jnp.int32(0))

  def rollout_body(carry, time):
    thetas, env_state, obs, done, rng = carry
    rng, k_step = jax.random.split(rng)
    action = jax.vmap(act)(thetas, obs)
    ps = _common.population_step(env, env_params, k_step, env_state, action,
                                 done, time, horizon, mesh)
    return (thetas, ps.env_state, ps.next_obs, ps.done, rng), ps.reward

  def sample_and_reset(state: REPSState):
    rng, k_theta, k_reset, k_roll = jax.random.split(state.rng, 4)
    thetas = sample_thetas(k_theta, state.dist, k)
    obs, env_state = _common.population_reset(env, env_params, k_reset, k,
                                              mesh)
    return rng, (thetas, env_state, obs, jnp.zeros((k,), bool), k_roll)

  def update(state: REPSState, rng, thetas, rewards):
    returns = jnp.sum(distributed.replicate(rewards, mesh), axis=0)
    dist, info = reps_update(thetas, returns, state.dist, config.epsilon,
                             config.cov_reg, config.dual_iterations)
    metrics = dict(mean_return=jnp.mean(returns), max_return=jnp.max(returns),
                   eta=info.eta, kl_weights=info.kl_weights,
                   kl_gaussian=info.kl_gaussian,
                   effective_sample_size=info.effective_sample_size)
    return REPSState(dist=dist, rng=rng, iteration=state.iteration + 1), metrics

  def iteration(state, run, sample_fn, update_fn):
    rng, carry = sample_fn(state)
    _, rewards = run(carry)
    return update_fn(state, rng, carry[0], rewards)

  return REPS(init=init,
              update_iteration=_common.make_update_iteration(
                  iteration, config.strategy, rollout_body, horizon,
                  sample_and_reset, update),
              policy_fn=policy_fn, initial_carry=_common.no_carry,
              config=config, num_params=num_params)


def make_train(config: REPSConfig, env, env_params, num_iterations: int,
               controller_fn: Optional[Callable[[jax.Array, jax.Array],
                                                jax.Array]] = None,
               num_params: Optional[int] = None,
               mesh: Optional[jax.sharding.Mesh] = None):
  """purejaxrl-style ``train(rng) -> (state, metrics)``: one jittable function
  (``_common.make_train``; needs ``strategy='scan'``)."""
  return _common.make_train(
      make_reps(config, env, env_params, controller_fn, num_params, mesh),
      num_iterations)


@struct.dataclass
class TaskFamilyREPSState:
  """REPS state plus the member-draw key: the whole learner state."""
  reps: REPSState
  member_rng: chex.PRNGKey

  @property
  def dist(self) -> SearchDistribution:
    return self.reps.dist

  @property
  def iteration(self) -> jax.Array:
    return self.reps.iteration


def draw_member_index(member_rng: chex.PRNGKey, num_members: int
                      ) -> Tuple[chex.PRNGKey, jax.Array]:
  """``(next member_rng, member index)``: one uniform draw in [0, M), as an
  int32 array (jittable)."""
  member_rng, key = jax.random.split(member_rng)
  return member_rng, jax.random.randint(key, (), 0, num_members)


def draw_member(member_rng: chex.PRNGKey, num_members: int
                ) -> Tuple[chex.PRNGKey, int]:
  """``draw_member_index`` with the index as a Python int."""
  member_rng, index = draw_member_index(member_rng, num_members)
  return member_rng, int(index)


def make_reps_over_tasks(config: REPSConfig, envs, env_params,
                         controller_fn: Optional[Callable[[jax.Array, jax.Array],
                                                          jax.Array]] = None,
                         num_params: Optional[int] = None, *,
                         jittable: bool = False,
                         mesh: Optional[jax.sharding.Mesh] = None) -> REPS:
  """Episodic REPS whose training runs come from a family of environments.

  Daniel, Taylor & Nowozin (2016) train one controller over randomly drawn
  small CNNs and data subsets. Protocol here: every iteration draws ONE
  member (uniformly, from the key carried in the learner state) and runs all
  N thetas of the iteration on it. The REPS weights ``exp(R_k / eta)``
  compare the returns of one iteration with each other; were the thetas
  spread over members, the return differences would mostly be differences
  in task difficulty (a 2-filter net on 500 examples vs a 32-filter net),
  and REPS would reward thetas for the task they happened to get. On one
  member (common random numbers for the task), the differences come from
  theta and the per-run noise (initialisation, eta0, batches) that the
  controller has to be robust to anyway; over iterations the controller
  still sees every member. (The talk: "in each learning iteration sample a
  parameter vector from the policy, a network and a training set", which
  may pair every theta with its own network; with N thetas per REPS update
  that mixes task difficulty into the weights, as above.)

  Every member must have the same observation and action (true for
  'daniel2016': the features do not depend on the network), so one theta
  drives them all. By default each member's iteration compiles separately
  (on the first iteration that draws it) and ``update_iteration`` dispatches
  in Python. ``jittable=True`` makes ``update_iteration`` one traceable
  function instead (``lax.switch`` on the drawn index, every member's
  iteration compiled into it; needs ``strategy='scan'``), as
  ``make_train_over_tasks`` needs; same draws, same numbers.

  Args:
    config: a ``REPSConfig``.
    envs: the members' environments (a non-empty sequence).
    env_params: their shared ``LREnvParams``.
    controller_fn, num_params, mesh: as in ``make_reps``.
    jittable: see above.

  Returns:
    A ``REPS`` whose state is a ``TaskFamilyREPSState`` (``state.dist`` is
    the search distribution, as for ``make_reps``); the metrics add
    ``member``, the index drawn at that iteration.
  """
  envs = tuple(envs)
  if not envs:
    raise ValueError("envs=(); allowed: a non-empty sequence of "
                     "environments.")
  shapes = {(e.observation_size, tuple(e.action_shape)) for e in envs}
  if len(shapes) != 1:
    raise ValueError(f"the members' (observation_size, action_shape) differ: "
                     f"{sorted(shapes)}; allowed: one shape for all members.")
  members = tuple(make_reps(config, e, env_params, controller_fn, num_params,
                            mesh) for e in envs)

  def init(key: chex.PRNGKey) -> TaskFamilyREPSState:
    k_reps, k_member = jax.random.split(key)
    return TaskFamilyREPSState(reps=members[0].init(k_reps),
                               member_rng=k_member)

  if jittable and config.strategy != "scan":
    raise ValueError(f"jittable=True needs strategy='scan', got "
                     f"{config.strategy!r}; allowed for 'chunk'/'loop': "
                     "jittable=False (Python dispatch).")

  def update_iteration(state: TaskFamilyREPSState):
    if jittable:
      member_rng, member = draw_member_index(state.member_rng, len(members))
      reps_state, metrics = jax.lax.switch(
          member, [m.update_iteration for m in members], state.reps)
    else:
      member_rng, member = draw_member(state.member_rng, len(members))
      reps_state, metrics = members[member].update_iteration(state.reps)
    return (TaskFamilyREPSState(reps=reps_state, member_rng=member_rng),
            dict(metrics, member=jnp.int32(member)))

  return REPS(init=init, update_iteration=update_iteration,
              policy_fn=members[0].policy_fn, initial_carry=_common.no_carry,
              config=config, num_params=members[0].num_params)


def make_train_over_tasks(config: REPSConfig, envs, env_params,
                          num_iterations: int,
                          controller_fn: Optional[Callable[
                              [jax.Array, jax.Array], jax.Array]] = None,
                          num_params: Optional[int] = None,
                          mesh: Optional[jax.sharding.Mesh] = None):
  """purejaxrl-style ``train(rng)`` of REPS over a family of environments.

  ``make_reps_over_tasks(..., jittable=True)`` in ``_common.make_train``:
  one program holds every member's iteration (compile time grows with the
  number of members); needs ``strategy='scan'``.
  """
  return _common.make_train(
      make_reps_over_tasks(config, envs, env_params, controller_fn,
                           num_params, jittable=True, mesh=mesh),
      num_iterations)
