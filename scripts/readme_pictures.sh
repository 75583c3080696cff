#!/usr/bin/env bash
# Remakes the README's pictures (docs/readme/) from the shipped model and images, with the very
# commands the README shows beside them. Needs the build of scripts/demo.sh or scripts/test.sh
# (build/), chromium, xvfb and xdotool (scripts/setup.sh --tests) and python3-opencv
# (scripts/setup.sh --tools) to shrink the views into JPEGs.
set -euo pipefail
cd "$(dirname "$0")/.."

vitscope=build/apps/vitscope
demo=build/apps/demo/vitscope-demo
pictures=docs/readme
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$pictures"

# A view as a JPEG at most 1200 pixels wide: picture SOURCE NAME.
picture() {
  /usr/bin/python3 - "$1" "$pictures/$2" <<'EOF'
import sys, cv2
image = cv2.imread(sys.argv[1])
scale = min(1.0, 1200 / image.shape[1])
if scale < 1:
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
cv2.imwrite(sys.argv[2], image, [cv2.IMWRITE_JPEG_QUALITY, 88])
EOF
}

# The main job, exactly as scripts/demo.sh runs it.
"$vitscope" run assets/images --out "$work/out"
for view in classes pca token_norm channels; do
  picture "$work/out/images/shapes_1.png/$view.png" "shapes_1_$view.jpg"
done

# Options the README shows, one run each: points on the ring, the triangle, the disc and the
# background of shapes_1, then on the ring, the square and the disc of shapes_2.
"$vitscope" run assets/images/shapes_1.png --out "$work/points" --points 100,100 60,95 185,18 0.7,0.7
for view in attention_points attention_heads attention_masks attention_rollout attention_cross; do
  picture "$work/points/shapes_1.png/$view.png" "shapes_1_$view.jpg"
done
"$vitscope" run assets/images/shapes_2.png --out "$work/max" --points 63,64 178,85 190,185 \
    --attention-views heads --head-fusion max
picture "$work/max/shapes_2.png/attention_heads.png" shapes_2_heads_max.jpg
"$vitscope" run assets/images/shapes_2.png --out "$work/masks" --points 63,64 178,85 190,185 \
    --attention-views masks --threshold 0.9 --attention-layer 0
picture "$work/masks/shapes_2.png/attention_masks.png" shapes_2_masks_layer0.jpg
"$vitscope" run assets/images/shapes_1.png --out "$work/decoder" --points 100,100 60,95 185,18 0.7,0.7 \
    --attention-views points --attention-module decoder
picture "$work/decoder/shapes_1.png/attention_points.png" shapes_1_decoder_points.jpg

# Bring your own model: the CLS demo model (torchvision's VisionTransformer, tools/train_cls_demo.py,
# imported by tools/import_model.py) on a scene it never saw: DINO's per-head CLS attention, its masks.
"$vitscope" run docs/readme/cls_scene.png --model assets/models/cls_demo.safetensors --out "$work/cls" \
    --attention-views cls,cls_masks
picture "$work/cls/cls_scene.png/attention_cls.png" cls_attention.jpg
picture "$work/cls/cls_scene.png/attention_cls_masks.png" cls_masks.jpg

# Detection: the shipped DETR-style detector (tools/train_detector.py) on the shipped scenes: its
# boxes, and each detection's decoder cross-attention with its box.
"$vitscope" run assets/images --model assets/models/detector.safetensors --out "$work/detector"
picture "$work/detector/images/shapes_1.png/detections.png" shapes_1_detections.jpg
picture "$work/detector/images/shapes_1.png/attention_cross.png" shapes_1_detector_cross.jpg

chromium_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
                --disable-background-networking --disable-component-update --disable-sync
                --hide-scrollbars)
shoot() {  # shoot PAGE SIZE NAME
  chromium "${chromium_flags[@]}" --user-data-dir="$work/chromium-$3" --window-size="$2" \
      --virtual-time-budget=3000 --screenshot="$work/$3.png" "file://$1" 2>/dev/null
  picture "$work/$3.png" "$3.jpg"
}
shoot "$work/out/index.html" 1200,760 gallery
shoot "$work/out/images/shapes_1.png/index.html" 1200,900 gallery_page

# The demo window under Xvfb: a click on the disc, m for the decoder's self-attention, then s saves
# exactly what the window shows.
export DEMO="$demo" SAVES="$work/saves"
scripts/with_xvfb.sh sh -c '
  "$DEMO" assets/images/shapes_1.png --save-dir "$SAVES" & app=$!
  for _ in $(seq 1 300); do
    wid=$(xdotool search --name "^vitscope-demo\$" 2>/dev/null | head -n 1); [ -n "$wid" ] && break
    sleep 0.1
  done
  sleep 1
  xdotool windowfocus "$wid"; xdotool mousemove --window "$wid" 390 40 click 1; sleep 0.5
  xdotool key m; sleep 0.5; xdotool key s; sleep 1; xdotool key q; wait $app'
picture "$SAVES/vitscope-demo-001.png" demo.jpg
echo "wrote $(ls "$pictures" | wc -l) pictures in $pictures"
