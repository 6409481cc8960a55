// read_input and decode_input (inputs.h): one input image as the networks take it. Kept apart
// from the rest of inputs.cpp, and free of LibTorch, because the decoder processes
// (tools/decoder) run decode_input for pneumo serve's uploads.
#include <string_view>

#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"
#include "pneumo/infer/inputs.h"

namespace pneumo::infer {

namespace {

data::DicomReadOptions dicom_options(const std::string& window) {
  data::DicomReadOptions options;
  options.window = window == "file" ? data::DicomReadOptions::Window::kFromFile : data::DicomReadOptions::Window::kNone;
  return options;
}

void take_dicom(InputImage& image, data::DicomImage dicom) {
  image.pixels = std::move(dicom.pixels);
  image.pixel_spacing_mm[0] = dicom.meta.pixel_spacing_row_mm;
  image.pixel_spacing_mm[1] = dicom.meta.pixel_spacing_col_mm;
  image.facts.photometric = dicom.meta.photometric;
  image.facts.bits_stored = dicom.meta.bits_stored;
  image.facts.dicom = std::move(dicom.meta);
}

bool starts_with(const std::string& bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() && std::string_view(bytes).substr(0, prefix.size()) == prefix;
}

}  // namespace

InputImage read_input(const InputFile& file, const std::string& window) {
  InputImage image;
  image.file = file;
  if (data::is_png_or_jpeg(file.path)) {
    image.pixels = data::read_grey_image(file.path);
    image.facts = data::read_input_facts(file.path);
  } else
    take_dicom(image, data::read_dicom(file.path, dicom_options(window)));
  return image;
}

InputImage decode_input(std::string bytes, const std::string& id, const std::string& window) {
  InputImage image;
  image.file.id = id;
  if (starts_with(bytes, std::string_view("\x89PNG", 4)) || starts_with(bytes, "\xFF\xD8")) {
    image.pixels = data::decode_grey_image(bytes, id);
    image.facts = data::encoded_image_facts(bytes, id);
  } else {
    take_dicom(image, data::decode_dicom(std::move(bytes), id, dicom_options(window)));
  }
  return image;
}

}  // namespace pneumo::infer
