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
  training = 'hypergan_tf.methods.hypergan.training'
  assert training in graph and graph[training]
  cycle = find_cycle(graph)
  assert cycle is None, ' -> '.join(cycle)


# The layers, bottom first: a module imports only from a lower layer or from
# its own group. Groups of one layer do not import each other (the HyperGAN
# method and the baselines stand side by side). metrics is pure arithmetic on
# members' outputs, filed under evaluation/ but imported by models and
# methods, so it sits at the bottom.
LAYERS = (
    {'datasets': ('hypergan_tf.datasets', 'hypergan_tf.data'),
     'runtime': ('hypergan_tf.runtime',),
     'metrics': ('hypergan_tf.evaluation.metrics',)},
    {'model': ('hypergan_tf.model',)},
    {'evaluation': ('hypergan_tf.evaluation',)},
    {'methods': ('hypergan_tf.methods',)},
    {'hypergan': ('hypergan_tf.methods.hypergan',),
     'baselines': ('hypergan_tf.methods.baselines',)},
    {'serving': ('hypergan_tf.serving',)},
    {'experiments': ('hypergan_tf.experiments',)},
    {'package': ('hypergan_tf',)},
)


def layer_of(module: str) -> tuple[int, str]:
  """(layer index, group) of a module: its longest matching prefix."""
  best = None
  for index, layer in enumerate(LAYERS):
    for group, prefixes in layer.items():
      for prefix in prefixes:
        if module == prefix or module.startswith(prefix + '.'):
          if best is None or len(prefix) > best[0]:
            best = (len(prefix), index, group)
  assert best is not None, f'{module} is in no layer of LAYERS'
  return best[1], best[2]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
  """Imports from a module to a higher layer or to a sibling group."""
  bad = []
  for module, imported in sorted(graph.items()):
    index, group = layer_of(module)
    for other in sorted(imported):
      other_index, other_group = layer_of(other)
      if other_index > index or (other_index == index and other_group != group):
        bad.append(f'{module} ({group}) imports {other} ({other_group})')
  return bad


def test_every_module_is_in_a_layer():
  for module in import_graph():
    layer_of(module)


def test_imports_point_down_the_layers():
  assert upward_imports(import_graph()) == []


@pytest.mark.parametrize('module, imported', [
    ('hypergan_tf.model.targets', 'hypergan_tf.methods.loop'),
    ('hypergan_tf.evaluation.metrics', 'hypergan_tf.evaluation.figures'),
    ('hypergan_tf.datasets.data', 'hypergan_tf.runtime.rundir'),
    ('hypergan_tf.methods.baselines.ensemble',
     'hypergan_tf.methods.hypergan.training'),
    ('hypergan_tf.serving.api', 'hypergan_tf.experiments.reproduce'),
])
def test_an_upward_import_is_caught(module, imported):
  graph = import_graph()
  graph.setdefault(module, set()).add(imported)
  assert upward_imports(graph) == [
      f'{module} ({layer_of(module)[1]}) imports {imported} '
      f'({layer_of(imported)[1]})']


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
