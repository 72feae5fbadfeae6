"""The works the report cites, set in GB/T 7714-2015 (the Chinese national standard for reference
lists, which lab reports follow), numbered in the order the text first cites them."""

from __future__ import annotations

REFERENCES = {
    "lecun1998": "LeCun Y, Bottou L, Bengio Y, et al. Gradient-based learning applied to document recognition[J]. "
                 "Proceedings of the IEEE, 1998, 86(11): 2278-2324.",
    "lecun_mnist": "LeCun Y, Cortes C, Burges C J C. The MNIST database of handwritten digits[DB/OL]. "
                   "http://yann.lecun.com/exdb/mnist/.",
    "zhang2019": "Zhang R. Making convolutional networks shift-invariant again[C]//Proceedings of the 36th "
                 "International Conference on Machine Learning. Long Beach: PMLR, 2019: 7324-7334.",
    "azulay2019": "Azulay A, Weiss Y. Why do deep convolutional networks generalize so poorly to small image "
                  "transformations?[J]. Journal of Machine Learning Research, 2019, 20(184): 1-25.",
    "srivastava2014": "Srivastava N, Hinton G, Krizhevsky A, et al. Dropout: a simple way to prevent neural networks "
                      "from overfitting[J]. Journal of Machine Learning Research, 2014, 15(56): 1929-1958.",
    "kingma2015": "Kingma D P, Ba J. Adam: a method for stochastic optimization[C]//3rd International Conference on "
                  "Learning Representations. San Diego, 2015.",
    "loshchilov2019": "Loshchilov I, Hutter F. Decoupled weight decay regularization[C]//7th International "
                      "Conference on Learning Representations. New Orleans, 2019.",
    "smith2019": "Smith L N, Topin N. Super-convergence: very fast training of neural networks using large learning "
                 "rates[C]//Artificial Intelligence and Machine Learning for Multi-Domain Operations Applications. "
                 "Baltimore: SPIE, 2019, 11006: 369-386.",
    "simonyan2014": "Simonyan K, Vedaldi A, Zisserman A. Deep inside convolutional networks: visualising image "
                    "classification models and saliency maps[C]//2nd International Conference on Learning "
                    "Representations, Workshop Track. Banff, 2014.",
    "zeiler2014": "Zeiler M D, Fergus R. Visualizing and understanding convolutional networks[C]//Computer Vision - "
                  "ECCV 2014. Cham: Springer, 2014: 818-833.",
    "bigun1987": "Bigün J, Granlund G H. Optimal orientation detection of linear symmetry[C]//Proceedings of the "
                 "First International Conference on Computer Vision. London: IEEE, 1987: 433-438.",
    "paszke2019": "Paszke A, Gross S, Massa F, et al. PyTorch: an imperative style, high-performance deep learning "
                  "library[C]//Advances in Neural Information Processing Systems 32. Vancouver: Curran Associates, "
                  "2019: 8024-8035.",
    "kokhlikyan2020": "Kokhlikyan N, Miglani V, Martin M, et al. Captum: a unified and generic model interpretability "
                      "library for PyTorch[EB/OL]. arXiv: 2009.07896, 2020.",
}
