"""The NOS controller: an LSTM that writes token programs (Bello et al. 2017).

Paper section 3.2 and Figure 3: a single-layer LSTM (hidden 150, weights
U(-0.08, 0.08), section 4.2) emits a rule one token at a time, five tokens
``(op1, op2, u1, u2, b)`` per group, each from its own softmax; the sampled
token is embedded and fed to the next step. The paper's sampling constraints
(section 4.1) are applied by setting forbidden logits to -inf:

* ``distinct_operands``: op2 differs from op1 in every group;
* ``no_final_add``: the last group's binary is not addition;
* ``reuse_previous``: group i > 0 uses the output of group i - 1 as op1 or
  op2. The paper says "reuse one of the previously computed operands"; we
  ask for the latest one, which makes every group feed the rule (no dead
  groups), so a depth-d program really is a depth-d tree.

Sub-vocabularies (``SearchSpace.operands / unary / binary``) restrict the
base operands and functions, giving the paper's 10^6 .. 10^11 rule spaces
(`search_space_size`); earlier group outputs are always allowed operands.

Programs are int32 ``(num_groups, 5)`` arrays in the layout of
`lr_meta.rules.vocabulary`; a batch is ``(B, num_groups, 5)``.
"""

import dataclasses
from typing import NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lr_meta.rules import vocabulary as voc

__all__ = (
    "HIDDEN_SIZE",
    "INIT_SCALE",
    "MAX_GROUPS",
    "RuleController",
    "Sample",
    "SearchSpace",
    "init_params",
    "log_prob",
    "make_search_space",
    "sample",
    "search_space_size",
    "step_mask",
)

INIT_SCALE = 0.08      # paper section 4.2: weights ~ U(-0.08, 0.08)
HIDDEN_SIZE = 150      # paper section 4.2
MAX_GROUPS = 4         # paper section 4.1: trees of depth 1 to 4


def _names(table):
  return tuple(tok.name for tok in table)


def _lookup(kind, table, names):
  """Canonical names (or aliases) -> sorted unique token ids."""
  spellings = {}
  for tok in table:
    for spelling in (tok.name,) + tok.aliases:
      spellings[spelling] = tok.id
  ids = []
  for name in names:
    if name not in spellings:
      raise ValueError(f"unknown {kind} {name!r} in the search space; "
                       f"allowed: {', '.join(_names(table))}")
    ids.append(spellings[name])
  if not ids:
    raise ValueError(f"the search space needs at least one {kind}; "
                     f"allowed: {', '.join(_names(table))}")
  return tuple(sorted(set(ids)))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """Which programs the controller may write (hashable, so jit-static).

  Build it with `make_search_space` (validates names and constraints).

  Attributes:
    num_groups: groups per program (tree depth, 1 .. 4).
    operand_ids: allowed base operand ids (`voc.OPERANDS`).
    unary_ids: allowed unary ids (`voc.UNARY`).
    binary_ids: allowed binary ids (`voc.BINARY`).
    distinct_operands: op1 != op2 in every group.
    no_final_add: the last binary is not addition.
    reuse_previous: group i > 0 uses group i - 1's output.
  """
  num_groups: int
  operand_ids: tuple
  unary_ids: tuple
  binary_ids: tuple
  distinct_operands: bool = True
  no_final_add: bool = True
  reuse_previous: bool = True

  @property
  def num_steps(self) -> int:
    return voc.GROUP_SIZE * self.num_groups

  @property
  def vocab_size(self) -> int:
    """Width of every softmax: the largest table (operands of the last group)."""
    return max(voc.num_bank_entries(self.num_groups - 1), voc.NUM_UNARY,
               voc.NUM_BINARY)

  def base_masks(self) -> np.ndarray:
    """bool (num_steps, vocab): tokens allowed before the constraints that
    depend on earlier tokens (distinct operands, reuse)."""
    masks = np.zeros((self.num_steps, self.vocab_size), bool)
    for group in range(self.num_groups):
      row = group * voc.GROUP_SIZE
      operands = np.zeros(self.vocab_size, bool)
      operands[list(self.operand_ids)] = True
      operands[voc.NUM_OPERANDS:voc.num_bank_entries(group)] = True
      masks[row] = masks[row + 1] = operands
      masks[row + 2, list(self.unary_ids)] = True
      masks[row + 3, list(self.unary_ids)] = True
      masks[row + 4, list(self.binary_ids)] = True
      if self.no_final_add and group == self.num_groups - 1:
        masks[row + 4, voc.BIN["add"]] = False
    return masks


def make_search_space(num_groups: int = 2,
                      operands: Sequence[str] = _names(voc.OPERANDS),
                      unary: Sequence[str] = _names(voc.UNARY),
                      binary: Sequence[str] = _names(voc.BINARY),
                      distinct_operands: bool = True,
                      no_final_add: bool = True,
                      reuse_previous: bool = True) -> SearchSpace:
  """A validated `SearchSpace` from token names (see `lr_meta.rules.vocabulary`).

  Raises:
    ValueError: naming an unknown token (and the allowed names), a bad
      num_groups, or a space in which some position has no allowed token.
  """
  if (not isinstance(num_groups, (int, np.integer)) or
      not 1 <= num_groups <= MAX_GROUPS):
    raise ValueError(f"num_groups={num_groups!r}; allowed: 1 .. {MAX_GROUPS}")
  space = SearchSpace(
      num_groups=int(num_groups),
      operand_ids=_lookup("operand", voc.OPERANDS, operands),
      unary_ids=_lookup("unary function", voc.UNARY, unary),
      binary_ids=_lookup("binary function", voc.BINARY, binary),
      distinct_operands=bool(distinct_operands),
      no_final_add=bool(no_final_add),
      reuse_previous=bool(reuse_previous))
  if search_space_size(space) == 0:
    raise ValueError(
        f"the search space {space} has no valid program (e.g. only addition "
        "as binary with no_final_add, or one operand with distinct_operands)")
  return space


def _operand2_mask(space: SearchSpace, group: int, op1) -> jax.Array:
  """Allowed op2 given op1 (traced), on top of the base mask."""
  ids = jnp.arange(space.vocab_size)
  ok = jnp.ones(space.vocab_size, bool)
  if space.distinct_operands:
    ok &= ids != op1
  if space.reuse_previous and group > 0:
    previous = voc.num_bank_entries(group) - 1
    ok &= (op1 == previous) | (ids == previous)
  return ok


def step_mask(space: SearchSpace, step: int, tokens: jax.Array) -> jax.Array:
  """bool (vocab,): the tokens allowed at `step` given the earlier `tokens`.

  Args:
    space: the search space.
    step: static position 0 .. num_steps - 1.
    tokens: int (num_steps,) flat program; only entries < step are read.
  """
  mask = jnp.asarray(space.base_masks()[step])
  group, position = divmod(step, voc.GROUP_SIZE)
  if position == 1:
    mask &= _operand2_mask(space, group, tokens[step - 1])
  return mask


def search_space_size(space: SearchSpace) -> int:
  """Number of distinct token programs the controller can write (exact)."""
  base = space.base_masks()
  size = 1
  for group in range(space.num_groups):
    row = group * voc.GROUP_SIZE
    pairs = sum(int(np.sum(base[row + 1] & np.asarray(
        _operand2_mask(space, group, op1)))) for op1 in np.flatnonzero(base[row]))
    size *= (pairs * int(base[row + 2].sum()) * int(base[row + 3].sum())
             * int(base[row + 4].sum()))
  return size


def _uniform(scale=INIT_SCALE):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class Sample(NamedTuple):
  """Programs with their log-probabilities under the sampling parameters.

  Attributes:
    programs: int32 (B, num_groups, 5).
    log_prob: float (B,), sum over the program's tokens.
    entropy: float (B,), sum over positions of the masked softmax entropy.
  """
  programs: chex.Array
  log_prob: chex.Array
  entropy: chex.Array


class RuleController(nn.Module):
  """Single-layer LSTM writing one program (paper Figure 3).

  Calling it with ``tokens=None`` samples a program with `key`; with given
  flat ``tokens`` (num_steps,) it scores them (teacher forcing). Either way it
  returns ``(tokens, log_prob, entropy)`` for one program; vmap for batches.
  """
  space: SearchSpace
  hidden_size: int = HIDDEN_SIZE
  embed_size: int = HIDDEN_SIZE

  @nn.compact
  def __call__(self, key, tokens=None):
    space = self.space
    num_steps, vocab = space.num_steps, space.vocab_size
    init = _uniform()
    cell = nn.OptimizedLSTMCell(self.hidden_size, kernel_init=init,
                                recurrent_kernel_init=init, bias_init=init)
    # Separate embedding and softmax per position (paper: "every prediction
    # is carried out by a softmax classifier and then fed into the next time
    # step as input").
    start = self.param("start", init, (self.embed_size,))
    embed = self.param("embed", init, (num_steps, vocab, self.embed_size))
    head_w = self.param("head_w", init, (num_steps, self.hidden_size, vocab))
    head_b = self.param("head_b", init, (num_steps, vocab))

    sampling = tokens is None
    out = jnp.zeros(num_steps, jnp.int32) if sampling else jnp.asarray(
        tokens, jnp.int32)
    carry = (jnp.zeros(self.hidden_size), jnp.zeros(self.hidden_size))
    x = start
    log_prob = entropy = jnp.zeros(())
    keys = jax.random.split(key, num_steps)
    # num_steps <= 20: unrolled at trace time, inside the caller's jit.
    for step in range(num_steps):
      carry, h = cell(carry, x)
      logits = h @ head_w[step] + head_b[step]
      mask = step_mask(space, step, out)
      logits = jnp.where(mask, logits, -jnp.inf)
      if sampling:
        out = out.at[step].set(jax.random.categorical(keys[step], logits))
      token = out[step]
      logp = jax.nn.log_softmax(logits)
      log_prob += logp[token]
      # 0 instead of -inf on masked entries keeps p * log p (and its
      # gradient) finite: p is exactly 0 there.
      safe = jnp.where(mask, logp, 0.0)
      entropy -= jnp.sum(jnp.exp(safe) * safe * mask)
      x = embed[step, token]
    return out, log_prob, entropy


def init_params(space: SearchSpace, key: chex.PRNGKey, **kwargs):
  """Controller parameters, all U(-0.08, 0.08)."""
  return RuleController(space, **kwargs).init(key, jax.random.PRNGKey(0))


def sample(params, space: SearchSpace, key: chex.PRNGKey, batch_size: int,
           **kwargs) -> Sample:
  """Samples `batch_size` programs (jit-able with space and batch static)."""
  model = RuleController(space, **kwargs)
  tokens, log_prob, entropy = jax.vmap(
      lambda k: model.apply(params, k))(jax.random.split(key, batch_size))
  programs = tokens.reshape(batch_size, space.num_groups, voc.GROUP_SIZE)
  return Sample(programs, log_prob, entropy)


def log_prob(params, space: SearchSpace, programs: chex.Array,
             **kwargs) -> Sample:
  """Log-probabilities and entropies of given programs (B, num_groups, 5)."""
  programs = jnp.asarray(programs, jnp.int32)
  chex.assert_rank(programs, 3)
  if programs.shape[1:] != (space.num_groups, voc.GROUP_SIZE):
    raise ValueError(f"programs must have shape (B, {space.num_groups}, "
                     f"{voc.GROUP_SIZE}) for this search space; got "
                     f"{programs.shape}")
  model = RuleController(space, **kwargs)
  flat = programs.reshape(programs.shape[0], -1)
  _, lp, ent = jax.vmap(lambda t: model.apply(params, jax.random.PRNGKey(0),
                                              t))(flat)
  return Sample(programs, lp, ent)
