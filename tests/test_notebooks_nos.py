"""notebooks/optimizer_search.ipynb, run as a user runs it, 2 iterations."""

QUERY = """dict(
    history=[(r.iteration, float(r.mean_reward), float(r.best_so_far),
              int(r.num_unique_total)) for r in search.history],
    board=[(row["rule"], float(row["reward"])) for row in board],
    best_rule_again=nos.format_program(np.asarray(best["program"])),
    test_accuracy=test_accuracy,
    configs_importable=importlib.util.find_spec("configs") is not None)"""


def test_optimizer_search_notebook_runs_from_notebooks_dir(run_notebook):
  _, v = run_notebook("optimizer_search.ipynb", query=QUERY,
                      nos_iterations=2)
  assert v["configs_importable"] is False
  iterations, means, best, scored = zip(*v["history"])
  assert iterations == (1, 2)
  assert scored == (4, 8)                      # 4 new rules per iteration
  assert best[0] <= best[1] and all(m <= b for m, b in zip(means, best))
  rewards = [reward for _, reward in v["board"]]
  assert len(rewards) == 5 and rewards == sorted(rewards, reverse=True)
  assert rewards[0] == best[-1]                # the leaderboard's top
  # The best rule's token program prints as its readable rule, and
  # training with it gives a real accuracy (10 classes).
  assert v["best_rule_again"] == v["board"][0][0]
  assert 0.0 < v["test_accuracy"] <= 1.0
