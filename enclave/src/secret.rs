//! Containers for secret field elements: redacted `Debug`, zeroized on drop, no `Clone`.

use crate::field::Field;
use zeroize::Zeroize;

/// A vector of secret field elements (shares, inputs, PRSS outputs).
///
/// `Debug` prints only the length; the contents are zeroized when dropped.
pub struct SecretVec<F: Field>(Vec<F>);

impl<F: Field> SecretVec<F> {
    /// Wraps `v`, taking ownership so no unzeroized copy stays behind.
    pub fn new(v: Vec<F>) -> Self {
        Self(v)
    }
    /// `len` zeros.
    pub fn zeros(len: usize) -> Self {
        Self(vec![F::zero(); len])
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The elements.
    pub fn as_slice(&self) -> &[F] {
        &self.0
    }
    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [F] {
        &mut self.0
    }
    /// Appends `other`'s elements.
    pub fn extend_from_slice(&mut self, other: &[F]) {
        // Growing may reallocate; zeroize the old buffer rather than leave it to the allocator.
        let needed = self.0.len() + other.len();
        if self.0.capacity() < needed {
            let mut bigger = Vec::with_capacity(needed.max(2 * self.0.capacity()));
            bigger.extend_from_slice(&self.0);
            self.0.zeroize();
            self.0 = bigger;
        }
        self.0.extend_from_slice(other);
    }
    /// An empty vector with room for `cap` elements.
    pub fn with_capacity(cap: usize) -> Self {
        Self(Vec::with_capacity(cap))
    }
    /// Appends one element (grows like [`SecretVec::extend_from_slice`]).
    pub fn push(&mut self, x: F) {
        self.extend_from_slice(&[x]);
    }
    /// A copy, explicitly: secret containers are not `Clone` so copies are visible in review.
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<F: Field> Drop for SecretVec<F> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<F: Field> core::fmt::Debug for SecretVec<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "SecretVec<{}>[{} elements, redacted]",
            F::NAME,
            self.0.len()
        )
    }
}

impl<F: Field> PartialEq for SecretVec<F> {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0[..].ct_eq(&other.0[..]))
    }
}
