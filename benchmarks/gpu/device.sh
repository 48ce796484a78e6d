#!/bin/bash
# Device-side steps for run_recipe.py on a no-network GPU machine (see README.md).
#   device.sh stage1            copy .vllm-stage/a + shapes to /root/stage, extract the shapes
#   device.sh stage2            copy .vllm-stage/b
#   device.sh stage3 RUNS...    copy .vllm-stage/c, assemble + extract vLLM, start the batch driver detached
#   device.sh poll SECONDS      wait until the driver is done or SECONDS pass, then pack results into $OUT
set -u
STAGE=/root/stage; SITE=/root/site; RES=/root/results
case "$1" in
stage1)
  mkdir -p $STAGE && cp .vllm-stage/a/part-aa $STAGE/ && tar -xJf .vllm-stage/shapes/gpt-oss-shapes.tar.xz -C $STAGE
  ls $STAGE $STAGE/models; nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv ;;
stage2)
  cp .vllm-stage/b/part-ab $STAGE/ && ls -la $STAGE ;;
stage3)
  shift
  cp .vllm-stage/c/part-ac $STAGE/ && mkdir -p $SITE && cat $STAGE/part-aa $STAGE/part-ab $STAGE/part-ac | tar -xJf - -C $SITE || exit 1
  export PYTHONPATH=$SITE
  python3 -c 'import vllm; print("vllm", vllm.__version__)' || exit 1
  rm -rf /root/drv && mkdir -p /root/drv/benchmarks $RES && cp -r benchmarks/gpu /root/drv/benchmarks/ && cp -r launcher /root/drv/ 2>/dev/null
  cd /root/drv && RUN_RECIPE_WARMUP=${RUN_RECIPE_WARMUP:-0} PYTHONUNBUFFERED=1 setsid nohup python3 benchmarks/gpu/run_recipe.py batch \
      --commands benchmarks/gpu/commands.txt --only "$(IFS=,; echo "$*")" --stage $STAGE --out $RES \
      > $RES/driver.log 2>&1 < /dev/null &
  sleep 5; cat $RES/driver.log ;;
poll)
  end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$end" ] && ! grep -q "ALL DONE" $RES/driver.log 2>/dev/null; do sleep 5; done
  cat $RES/driver.log; nvidia-smi --query-gpu=memory.used --format=csv,noheader
  for d in $RES/*/; do n=$(basename $d); [ -f $d/server.log ] && tail -c 20000 $d/server.log > $RES/$n.serverlog.txt; done
  (cd $RES && tar -cJf $OUT/results.tar.xz --exclude='*/server.log' . ) ; cp $RES/driver.log $OUT/ ;;
esac
