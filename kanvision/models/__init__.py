"""kanvision model families, registered with timm on import (one file per family)."""
