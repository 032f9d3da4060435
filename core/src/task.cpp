#include "dptq/task.hpp"

#include "dptq/error.hpp"

namespace dptq {

void Progress::throw_if_cancelled() const {
  if (cancelled()) throw Error(ErrorKind::Cancelled, "", "cancelled");
}

}  // namespace dptq
