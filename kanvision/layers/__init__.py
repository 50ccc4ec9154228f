"""Pure-PyTorch KAN building blocks: bases, KANLinear, KANConv1d/2d/3d, SharedKANConv2d, GroupRational, GroupKAN."""

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
from kanvision.layers.group_activation import GroupActivation
from kanvision.layers.group_kan import GroupKAN, list_group_kan_inits, list_kans
from kanvision.layers.kan_conv import KANConv1d, KANConv2d, KANConv3d
from kanvision.layers.kan_conv_shared import InputScaledBasis, SharedKANConv2d
from kanvision.layers.kan_layer import KANLayer
from kanvision.layers.kan_linear import KANLinear
from kanvision.layers.rational import GroupRational
from kanvision.layers.spline_scaler import SplineScaler, add_spline_scaler

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
    "SharedKANConv2d",
    "InputScaledBasis",
    "SplineScaler",
    "add_spline_scaler",
    "GroupRational",
    "GroupActivation",
    "GroupKAN",
    "list_group_kan_inits",
    "list_kans",
]
