"""Pure-PyTorch KAN building blocks: bases, KANLinear, KANConv1d/2d/3d, GroupRational."""

from kanvision.layers.bases import (
    Basis,
    BSplineBasis,
    ChebyshevBasis,
    FourierBasis,
    GramBasis,
    GridBasis,
    RBFBasis,
    ReLUBasis,
    basis_parameters,
    create_basis,
    list_bases,
    register_basis,
)
from kanvision.layers.kan_conv import KANConv1d, KANConv2d, KANConv3d
from kanvision.layers.kan_layer import KANLayer
from kanvision.layers.kan_linear import KANLinear
from kanvision.layers.rational import GroupRational

__all__ = [
    "Basis",
    "BSplineBasis",
    "ChebyshevBasis",
    "FourierBasis",
    "GramBasis",
    "GridBasis",
    "RBFBasis",
    "ReLUBasis",
    "basis_parameters",
    "create_basis",
    "list_bases",
    "register_basis",
    "KANLayer",
    "KANLinear",
    "KANConv1d",
    "KANConv2d",
    "KANConv3d",
    "GroupRational",
]
