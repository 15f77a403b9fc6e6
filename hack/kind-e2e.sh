#!/usr/bin/env bash
# End-to-end check on kind, for people with Docker and kind (CI here has no
# container engine and runs tests/e2e against a local control plane instead).
#
#   hack/kind-e2e.sh            build the operator image, install the chart,
#                               apply the fast example as a dry run and wait
#                               for phase Rendered (no GPU needed)
#   GPU=1 hack/kind-e2e.sh      also apply it for real; needs a node with
#                               nvidia.com/gpu (NVIDIA device plugin) and the
#                               three claims of examples/run-fast.yaml
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-fluxlora-e2e}
NAMESPACE=${NAMESPACE:-fluxlora-system}
RUN_NAMESPACE=${RUN_NAMESPACE:-default}
TAG=${TAG:-e2e}
OPERATOR_IMAGE=fluxlora/operator:${TAG}
TRAINER_IMAGE=${TRAINER_IMAGE:-fluxlora/trainer:${TAG}}

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER"

docker build -t "$OPERATOR_IMAGE" .
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE"
if [ "${GPU:-0}" = 1 ]; then
  docker build -f trainer-image/Dockerfile -t "$TRAINER_IMAGE" .
  kind load docker-image --name "$CLUSTER" "$TRAINER_IMAGE"
fi

helm upgrade --install fluxlora charts/fluxlora \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository=fluxlora/operator --set image.tag="$TAG" \
  --set trainerImage="$TRAINER_IMAGE" --set "watchNamespaces={$RUN_NAMESPACE}" --wait --timeout 180s

name=alice-fast-dry
sed -e "s/^  name: alice-fast$/  name: $name/" -e 's/^spec:$/spec:\n  dryRun: true/' examples/run-fast.yaml \
  | kubectl apply -n "$RUN_NAMESPACE" -f -
kubectl wait -n "$RUN_NAMESPACE" "flr/$name" --for=jsonpath='{.status.phase}'=Rendered --timeout=120s
kubectl get flr -n "$RUN_NAMESPACE" "$name" -o jsonpath='{.status.command}'; echo

if [ "${GPU:-0}" = 1 ]; then
  kubectl apply -n "$RUN_NAMESPACE" -f examples/run-fast.yaml
  kubectl wait -n "$RUN_NAMESPACE" flr/alice-fast --for=jsonpath='{.status.phase}'=Succeeded --timeout=6h
fi
kubectl get flr -n "$RUN_NAMESPACE" -o wide
echo "kind-e2e: ok (delete with: kind delete cluster --name $CLUSTER)"
