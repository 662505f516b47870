"""Looking inside a trained model: the visualisations of the lectures (Simonyan's DeepMind
lecture, Louppe's lecture 5), after the runtime and training rooms.

`maps.py` computes the arrays from an inference-form ONNX model: the first layer's filters, class
saliency maps (the gradient of a class score with respect to the image, Simonyan et al. 2013,
through the training room's reverse-mode graph), occlusion sensitivity maps (Zeiler & Fergus
2014) and the images of a dataset that excite a channel most (an intermediate tensor exposed as
an extra output). `pictures.py` draws them as PNGs. `netdsl explain` (netdsl/cli/explain.py) is
the command line.
"""
