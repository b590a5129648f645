"""The package's import graph points one way: no module imports itself back."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / 'hypergan_tf'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict[str, set[str]]:
  """Module -> project modules it imports, at module or function level.

  The package's __init__ only re-exports; importing a submodule is an edge
  to that submodule, not to the package.
  """
  modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and (
          node.module.startswith('hypergan_tf')):
        for alias in node.names:
          full = f'{node.module}.{alias.name}'
          edges.add(full if full in modules else node.module)
      elif isinstance(node, ast.Import):
        edges.update(a.name for a in node.names if a.name in modules)
    edges.discard('hypergan_tf')
    edges.discard(name)
    graph[name] = edges
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """A cycle as a list of modules, or None (depth-first search)."""
  state, stack = {}, []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    state[node] = 'done'
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_find_cycle_finds_one():
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c',
                                                             'a']
  assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert 'hypergan_tf.training' in graph and graph['hypergan_tf.training']
  cycle = find_cycle(graph)
  assert cycle is None, ' -> '.join(cycle)


@pytest.mark.parametrize('module', ['targets', 'metrics', 'data', 'rundir'])
def test_the_bottom_layer_imports_nothing_above_it(module):
  bottom = {'hypergan_tf.targets', 'hypergan_tf.metrics', 'hypergan_tf.data',
            'hypergan_tf.rundir', 'hypergan_tf.datasets',
            'hypergan_tf.datasets.not_mnist'}
  assert import_graph()[f'hypergan_tf.{module}'] <= bottom


def test_import_is_quiet_by_default():
  # TensorFlow's CUDA-probe lines ('Could not find cuda drivers', 'All log
  # messages before absl::InitializeLog()', 'failed call to cuInit') are
  # silenced unless asked for.
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  env['PYTHONPATH'] = str(REPO)
  code = ('import hypergan_tf, tensorflow as tf; '
          "tf.config.list_logical_devices('GPU')")
  out = subprocess.run([sys.executable, '-c', code],
                       capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=300, check=True)
  assert out.stderr == ''
