#!/usr/bin/env bash
# Make Fashion-MNIST available for the quick profile.
# 1. the Debian package dataset-fashion-mnist (installed here when we are root and apt exists);
# 2. torchvision's download into the data root when ENCSTEAL_ALLOW_DOWNLOAD=1;
# 3. otherwise stop with the fix.
set -euo pipefail
PY=${1:-python3}
DEB=/usr/share/datasets/fashion-mnist
if [ -f "$DEB/train-images-idx3-ubyte.gz" ]; then
  exec "$PY" -c "from encsteal.data.quick import prepare_fashion_mnist as p; print('Fashion-MNIST ready in', p())"
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Fashion-MNIST from Debian (dataset-fashion-mnist)..."
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1) || \
    (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)
  exec "$PY" -c "from encsteal.data.quick import prepare_fashion_mnist as p; print('Fashion-MNIST ready in', p())"
fi
if [ "${ENCSTEAL_ALLOW_DOWNLOAD:-0}" = 1 ]; then
  exec "$PY" -c "from encsteal.data.quick import prepare_fashion_mnist as p; print('Fashion-MNIST ready in', p(download=True))"
fi
"$PY" -c "from encsteal.data.quick import prepare_fashion_mnist as p; print('Fashion-MNIST ready in', p())" && exit 0
echo "Fashion-MNIST is missing. Either: sudo apt-get install dataset-fashion-mnist" >&2
echo "or rerun with ENCSTEAL_ALLOW_DOWNLOAD=1 (torchvision downloads it into \$ENCSTEAL_DATA)." >&2
exit 1
