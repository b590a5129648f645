"""The target networks' forward and backward a chunk of networks at a time.

A train step holds every target network's activations for its backward
pass: at the paper's MNIST step (100 networks x 100 images) about 1.5 GiB
in float32, more than TensorFlow and the hypernetwork together. The task
loss is a mean over networks, so its gradient with respect to the generated
parameters is a sum of the chunks' gradients: each chunk runs forward and
backward on its own tape, on stopped copies of its parameters, the next
chunk after it (a control dependency), so one chunk's activations are alive
at a time; the generator's backward then takes the chunks' parameter
gradients as its output gradients. No recomputation: the same work as one
pass, and the same gradients up to the order of float sums.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from hypergan_tf.model import targets

# (logits [N, B, C], labels) -> per-example loss averaged over networks, [B].
TaskLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
# (spec, params, images, method) -> logits [N, B, C].
Forward = Callable[..., tf.Tensor]


def task_loss_and_gradients(
    spec: targets.TargetSpec, params: targets.Params, images: tf.Tensor,
    labels: tf.Tensor, chunk: int, forward: Forward, task_loss: TaskLoss,
    method: str, global_batch_size: int,
    scale: Callable[[tf.Tensor], tf.Tensor] = lambda loss: loss,
    per_network_inputs: bool = False):
  """The task loss of all networks, its gradients, and each network's
  predictions, computed `chunk` networks at a time.

  Args:
    params: the generated parameters, (kernel [N, ...], bias [N, ...]) per
      layer, N static; their gradients are returned, not taped.
    images, labels: the batch ([B, ...] shared, or [N, B, ...] with
      per_network_inputs).
    forward: `targets.apply` or `targets.apply_per_network`.
    task_loss: per-example loss averaged over the networks it is given.
    global_batch_size: the divisor of `tf.nn.compute_average_loss`.
    scale: applied to each chunk's loss before its gradient (loss scaling).

  Returns:
    (task loss, [(kernel gradient, bias gradient)] of `scale`d loss, argmax
    predictions [N, B]).
  """
  n = params[0][0].shape[0]
  if n is None:
    raise ValueError('Chunked target passes need a static number of '
                     'networks.')
  loss, gradients, predictions, after = 0.0, [], [], []
  for start in range(0, n, chunk):
    size = min(chunk, n - start)
    with tf.control_dependencies(after):  # One chunk's activations at a time.
      part = [(tf.stop_gradient(k[start:start + size]),
               tf.stop_gradient(b[start:start + size])) for k, b in params]
      x, y = ((images[start:start + size], labels[start:start + size])
              if per_network_inputs else (images, labels))
    with tf.GradientTape() as tape:
      tape.watch(part)
      logits = tf.cast(forward(spec, part, x, method), tf.float32)
      # The mean over all N networks is the chunks' means weighted by size.
      chunk_loss = tf.nn.compute_average_loss(
          task_loss(logits, y) * (size / n),
          global_batch_size=global_batch_size)
    grads = tape.gradient(scale(chunk_loss), part)
    after = tf.nest.flatten(grads)
    gradients.append(grads)
    predictions.append(tf.argmax(logits, -1, output_type=tf.int32))
    loss += chunk_loss
  joined = [tuple(tf.concat([g[i][j] for g in gradients], 0)
                  for j in range(2)) for i in range(len(params))]
  return loss, joined, tf.concat(predictions, 0)
