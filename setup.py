"""hypergan_tf: HyperGAN (Ratzlaff & Fuxin, ICML 2019) in TensorFlow/Keras."""

import setuptools

setuptools.setup(
    name='hypergan_tf',
    version='0.1.0',
    license='Apache-2.0',
    description='HyperGAN: a generator of all the parameters of a neural '
    'network, in TensorFlow 2 / Keras 3.',
    packages=setuptools.find_packages(include=['hypergan_tf',
                                               'hypergan_tf.*']),
    python_requires='>=3.10',
    install_requires=[
        'tensorflow>=2.21,<2.22',
        'keras>=3.15,<4',
        'tensorboard>=2.21,<2.22',  # tf.summary needs it; TF 2.21 omits it.
        'tensorflow-datasets>=4.9.10,<5',
        'importlib_resources',  # tensorflow-datasets imports it undeclared.
        'tensorflow-probability[tf]>=0.25,<0.26',  # [tf] pulls tf-keras.
        'absl-py',
        'cleverhans==4.0.0',
        'matplotlib',
        'numpy',
        # Only for its frost pictures (hypergan_tf.datasets.corruptions reads them
        # without importing it); pulls in opencv-python and scikit-image.
        'imagecorruptions',
    ],
    extras_require={'test': ['pytest', 'pytest-xdist']},
)
