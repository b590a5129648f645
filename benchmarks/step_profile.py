"""Where a HyperGAN train step's time goes, part by part.

  python benchmarks/step_profile.py --flagfile=configs/cifar10.flags \
      --heads=full,rank1,low_rank

For each head, at the flagfile's shapes (one process, the same batch):
the whole train step; the generators forward (mixer + layer generators) and
forward + backward; the target networks forward + backward on fixed
parameters; one Adam update of each part (mixer, generators,
discriminator) on zero gradients; and the input pipeline's time per batch
(augmented, as training reads it). Medians of --repeats timed calls after
two untimed ones. Run it on an idle machine; compare parts within a run.
"""

from absl import app
from absl import flags
import tensorflow as tf

from hypergan_tf.experiments import benchmark
from hypergan_tf.methods.hypergan import config
from hypergan_tf.methods.hypergan import training
from hypergan_tf.model import targets

config.define_flags()
flags.FLAGS.set_default('run_dir', 'unused')  # Nothing is written.
_HEADS = benchmark.define_heads_flag(default=('full',))
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed calls per part.',
                                lower_bound=1)


def _zero_update(optimizer, variables):
  """One compiled optimizer update of variables on zero gradients."""
  zeros = [tf.zeros_like(v) for v in variables]
  return tf.function(lambda: optimizer.apply_gradients(zip(zeros, variables)))


def profile(cfg: config.TrainConfig, repeats: int) -> dict[str, float]:
  """Seconds per call of each part of one train step."""
  trainer = training.Trainer(cfg)
  hn, spec = trainer.hypernet, cfg.spec
  size = trainer.examples_per_step
  images = tf.random.uniform((size,) + spec.input_shape, seed=0)
  labels = tf.random.uniform((size,), 0, spec.output_dim, tf.int32, seed=1)
  noise = tf.random.normal([cfg.num_networks, cfg.noise_dim], seed=2)
  generator_vars = hn.generator_variables

  @tf.function
  def generate():
    return hn.networks(noise, training=True)

  @tf.function
  def generate_and_back():
    with tf.GradientTape() as tape:
      params = hn.networks(noise, training=True)
      total = tf.add_n([tf.reduce_sum(t) for pair in params for t in pair])
    return tape.gradient(total, generator_vars)

  fixed = [(tf.Variable(k), tf.Variable(b)) for k, b in generate()]
  fixed_vars = [v for pair in fixed for v in pair]
  per_network = tf.reshape(images, [cfg.num_networks, -1,
                                    *spec.input_shape]) if (
                                        cfg.per_network_batches) else images

  @tf.function
  def target_pass():
    with tf.GradientTape() as tape:
      logits = (targets.apply_per_network(spec, fixed, per_network,
                                          cfg.forward_method)
                if cfg.per_network_batches else
                targets.apply(spec, fixed, images, cfg.forward_method))
      loss = tf.reduce_mean(logits)
    return tape.gradient(loss, fixed_vars)

  parts = {'train step': lambda: trainer.train_step(images, labels),
           'generators forward': lambda: generate()[0][0].numpy(),
           'generators forward + backward':
               lambda: generate_and_back()[0].numpy(),
           'target networks forward + backward':
               lambda: target_pass()[0].numpy()}
  for name, optimizer, variables in (
      ('mixer', trainer.m_optimizer, hn.mixer.trainable_variables),
      ('generators', trainer.g_optimizer, hn.layer_generator_variables),
      ('discriminator', trainer.d_optimizer,
       hn.discriminator.trainable_variables)):
    parts[f'Adam update, {name}'] = _zero_update(optimizer, variables)
  out = {name: benchmark.median_seconds(fn, 2, repeats)
         for name, fn in parts.items()}
  dataset = benchmark.training_batches(cfg, size)
  out['input pipeline, one batch'] = benchmark.median_seconds(
      lambda: next(dataset), 2, repeats)
  out['hypernetwork parameters'] = sum(int(tf.size(v)) for v in hn.weights)
  return out


def main(argv):
  del argv
  base = config.from_flags()
  results = {head: profile(config.TrainConfig(**{
      **base.to_dict(), 'head': head, 'pretrain_mixer_steps': 0,
      'run_dir': ''}), _REPEATS.value) for head in _HEADS.value}
  names = list(next(iter(results.values())))
  print(f'{"part":<40}' + ''.join(f'{h:>14}' for h in results))
  for name in names:
    cells = ''.join(
        f'{r[name]:>14,}' if name.endswith('parameters') else
        f'{1000 * r[name]:>11.1f} ms' for r in results.values())
    print(f'{name:<40}{cells}')


if __name__ == '__main__':
  app.run(main)
