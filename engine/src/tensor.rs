//! A named, shaped view of (part of) a GPU buffer. Several tensors may share one buffer at
//! different offsets: parameters, gradients and Adam state are each one buffer with an offset table.

use std::sync::Arc;

use crate::error::{Error, Result};

/// f32 elements, row-major (NCHW for activations, OIHW for conv weights).
#[derive(Clone, Debug)]
pub struct Tensor {
    name: Arc<str>,
    buffer: Arc<wgpu::Buffer>,
    /// Byte offset into `buffer`; a multiple of the device's storage offset alignment.
    offset: u64,
    shape: Vec<usize>,
}

impl Tensor {
    pub fn new(name: &str, buffer: Arc<wgpu::Buffer>, offset: u64, shape: &[usize]) -> Tensor {
        Tensor {
            name: name.into(),
            buffer,
            offset,
            shape: shape.to_vec(),
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// A sub-tensor of `shape` starting `offset` elements into this one (a parameter inside the
    /// packed parameter buffer). The offset must keep the device's 256-byte binding alignment.
    pub fn view(&self, name: &str, offset: usize, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        if offset + len > self.len() || !(offset * 4).is_multiple_of(256) {
            return Err(Error::Shape {
                op: format!("view at element {offset} of `{}`", self.name),
                tensor: name.into(),
                expected: self.shape.clone(),
                got: shape.to_vec(),
            });
        }
        Ok(Tensor {
            name: name.into(),
            buffer: self.buffer.clone(),
            offset: self.offset + 4 * offset as u64,
            shape: shape.to_vec(),
        })
    }

    /// The same memory seen with another shape of the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::Shape {
                op: "reshape".into(),
                tensor: self.name.to_string(),
                expected: shape.to_vec(),
                got: self.shape.clone(),
            });
        }
        let mut t = self.clone();
        t.shape = shape.to_vec();
        Ok(t)
    }
    /// The binding resource covering exactly this tensor.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new((self.len() as u64 * 4).max(4)),
        })
    }
    /// Fails with an error naming `op`, this tensor and both shapes unless the shape is `expected`.
    pub fn expect_shape(&self, op: &str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::Shape {
                op: op.into(),
                tensor: self.name.to_string(),
                expected: expected.to_vec(),
                got: self.shape.clone(),
            });
        }
        Ok(())
    }
}
