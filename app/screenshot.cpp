#include "screenshot.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#define GLFW_INCLUDE_NONE
#include <GL/gl.h>

// Debian's libstb-dev; the implementation is compiled here, static, so nothing clashes with libstb.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

#include "dptq/atomic_file.hpp"
#include "dptq/error.hpp"

namespace dptq::studio {

std::vector<uint8_t> read_framebuffer_rgb(int width, int height) {
  std::vector<uint8_t> rgba(static_cast<size_t>(width) * height * 4);
  glFinish();
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadBuffer(GL_BACK);
  glReadPixels(0, 0, width, height, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
  // GL rows run bottom-up; PNG rows top-down. Alpha is dropped: the window is opaque.
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    const uint8_t* src = rgba.data() + static_cast<size_t>(height - 1 - y) * width * 4;
    uint8_t* dst = rgb.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; ++x) std::memcpy(dst + 3 * x, src + 4 * x, 3);
  }
  return rgb;
}

std::vector<uint8_t> crop_rgb(const std::vector<uint8_t>& rgb, int width, int height, int x, int y, int w,
                              int h, int& out_w, int& out_h) {
  const int x0 = std::clamp(x, 0, width), y0 = std::clamp(y, 0, height);
  const int x1 = std::clamp(x + w, x0, width), y1 = std::clamp(y + h, y0, height);
  out_w = x1 - x0;
  out_h = y1 - y0;
  std::vector<uint8_t> out(static_cast<size_t>(out_w) * out_h * 3);
  for (int r = 0; r < out_h; ++r)
    std::memcpy(out.data() + static_cast<size_t>(r) * out_w * 3,
                rgb.data() + (static_cast<size_t>(y0 + r) * width + x0) * 3, static_cast<size_t>(out_w) * 3);
  return out;
}

void write_png_rgb(const std::filesystem::path& path, int width, int height,
                   const std::vector<uint8_t>& rgb) {
  int len = 0;
  std::unique_ptr<unsigned char, void (*)(void*)> png(
      stbi_write_png_to_mem(rgb.data(), width * 3, width, height, 3, &len), std::free);
  if (!png) throw Error(ErrorKind::Io, path.string(), "PNG encoding failed");

  AtomicFile out(path);  // the PNG appears complete or not at all
  out.write(png.get(), static_cast<size_t>(len));
  out.commit();
}

}  // namespace dptq::studio
