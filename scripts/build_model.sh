# Sourced by demo.sh and serve.sh: builds Earshot (Release) and sets $model to a loadable model
# file, converting a .nemo with earshot-convert when given one.
#   build_model MODEL NAME     (NAME: the converted file's name in build/)
build_model() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$(nproc)" >/dev/null
  model=$1
  case "$model" in
    *.nemo)
      build/earshot-convert "$model" "build/$2.safetensors"
      model=build/$2.safetensors ;;
  esac
}
