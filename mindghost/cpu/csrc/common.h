// Helpers shared by mindghost's CPU kernels (depthwise.cc, gate.cc): the thread split and the argument checks of
// MindSpore's AOT custom-op signature.
#ifndef MINDGHOST_CPU_COMMON_H_
#define MINDGHOST_CPU_COMMON_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace {

// Below this much work (depthwise MACs, or kPassWork per element of a memory-bound pass) a call stays on one thread.
constexpr int64_t kThreadWork = int64_t{1} << 22;

inline int NumThreads() {
  static const int n = [] {
    const char *env = std::getenv("MINDGHOST_KERNEL_THREADS");
    int v = env ? std::atoi(env) : 0;
    if (v <= 0) v = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, v);
  }();
  return n;
}

}  // namespace

namespace mindghost_cpu {  // named, with inline functions: one pool for every kernel file of the library

// A persistent pool of NumThreads() - 1 workers (started on first use, never stopped: the process's exit ends
// them). Starting a thread per call cost ~20-40 us, as much as a small kernel. One job at a time: a call made while
// another op's job runs is done on its own thread.
class ThreadPool {
 public:
  explicit ThreadPool(int workers) {
    for (int i = 0; i < workers; ++i) std::thread([this] { Work(); }).detach();
  }

  // task(i) for every i in [0, tasks), on the workers and the calling thread; returns when all are done.
  void Run(int64_t tasks, const std::function<void(int64_t)> &task) {
    std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
    if (!job.owns_lock()) {
      for (int64_t i = 0; i < tasks; ++i) task(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      tasks_ = tasks;
      next_.store(0);
      pending_ = tasks;
      ++generation_;
    }
    wake_.notify_all();
    Drain(task, tasks);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0 && active_ == 0; });
    task_ = nullptr;
  }

 private:
  void Drain(const std::function<void(int64_t)> &task, int64_t tasks) {
    for (int64_t i = next_.fetch_add(1); i < tasks; i = next_.fetch_add(1)) {
      task(i);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_all();
    }
  }

  void Work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (task_ == nullptr) continue;
      const std::function<void(int64_t)> *task = task_;
      const int64_t tasks = tasks_;
      ++active_;
      lock.unlock();
      Drain(*task, tasks);
      lock.lock();
      if (--active_ == 0) done_.notify_all();
    }
  }

  std::mutex job_mutex_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)> *task_ = nullptr;
  int64_t tasks_ = 0, pending_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
  std::atomic<int64_t> next_{0};
};

inline ThreadPool &Pool(int workers) {
  static ThreadPool *pool = new ThreadPool(workers);  // leaked on purpose: no join at exit
  return *pool;
}

}  // namespace mindghost_cpu

namespace {

// fn(lo, hi) over [0, count) in contiguous chunks (4 per thread, taken in turn by whichever thread is free); small
// jobs stay on the calling thread. Each index's output depends only on the sizes, so results are deterministic.
template <typename F>
void ParallelFor(int64_t count, int64_t work_per_item, F fn) {
  const int64_t threads = std::min<int64_t>(NumThreads(), count);
  if (threads <= 1 || count * work_per_item < kThreadWork) {
    fn(int64_t{0}, count);
    return;
  }
  const int64_t chunks = std::min<int64_t>(count, threads * 4);
  const int64_t size = (count + chunks - 1) / chunks;
  const std::function<void(int64_t)> task = [&](int64_t i) {
    const int64_t lo = i * size;
    if (lo < count) fn(lo, std::min(count, lo + size));
  };
  mindghost_cpu::Pool(NumThreads() - 1).Run(chunks, task);
}

// 8 floats in one AVX register (GCC/Clang vector extension), loaded and stored unaligned.
typedef float V8 __attribute__((vector_size(32)));

inline V8 Load8(const float *p) {
  V8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Store8(float *p, V8 v) { std::memcpy(p, &v, sizeof(v)); }

inline float Sum8(V8 v) {
  float lanes[8];
  std::memcpy(lanes, &v, sizeof(v));
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// ParallelFor's work per element of a memory-bound pass (BatchNorm, the gate product), in depthwise MACs: such a
// pass over ~256K floats is worth a second thread.
constexpr int64_t kPassWork = 16;

inline bool AllFloat32(int count, const char **dtypes) {
  for (int i = 0; i < count; ++i) {
    if (std::strcmp(dtypes[i], "float32") != 0 && std::strcmp(dtypes[i], "float") != 0) return false;
  }
  return true;
}

inline bool Valid(int nparam, int expected, const int *ndims, const char **dtypes) {
  if (nparam != expected || !AllFloat32(nparam, dtypes)) return false;
  for (int i = 0; i < nparam; ++i) {
    if (ndims[i] != 4) return false;
  }
  return true;
}

}  // namespace

#endif  // MINDGHOST_CPU_COMMON_H_
